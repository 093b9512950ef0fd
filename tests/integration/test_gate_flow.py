"""The gate inside the real flow: a harmless bf16 candidate passes and is registered; a planted
degradation of the same candidate is rejected and the champion stays. Then the sweep and the noise floor."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from mlflow import MlflowClient

from pipeline.config import load_config, with_data_path
from pipeline.errors import GateFailed
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TINY = ["train.hidden_size=64", "train.hidden_layers=1", "train.epochs=5", "train.batch_size=128", "probe.steps=0",
        "precisions=fp32,bf16", "gate.latency_repeats=3"]
# Quality decides here, not this machine's speed: bf16 must be chosen whenever it passes.
QUALITY_ONLY = ["gate.selection=bf16", "gate.min_speedup=0.01", "gate.max_latency_ratio=100",
                "gate.max_memory_ratio=10"]


def _silence_class_3_in_bf16(monkeypatch):
    import flows.training as ft

    real = ft.train

    def degraded(split, cfg, policy, ckpt=None, on_epoch=None):
        result = real(split, cfg, policy, ckpt, on_epoch)
        if policy.name == "bf16":  # the planted regression: bf16's model can no longer predict class 3
            last = [m for m in result.model.modules() if isinstance(m, torch.nn.Linear)][-1]
            with torch.no_grad():
                last.bias[3] = -1e4
        return result

    monkeypatch.setattr(ft, "train", degraded)


def test_harmless_candidate_passes_then_a_planted_degradation_is_rejected_and_the_champion_stays(
        prefect_harness, tracking_store, digits_csv, monkeypatch):
    from flows.training import training_flow

    cfg = with_data_path(load_config(overrides=TINY + QUALITY_ONLY), str(digits_csv))
    state = training_flow(cfg, ROOT, return_state=True)
    assert state.is_completed(), state.message
    first = state.result()
    bf16 = first.gate.verdict("bf16")
    assert first.gate.selected == "bf16", bf16.reason
    assert bf16.comparison.agreement >= 0.95
    client = MlflowClient()
    champion = client.get_model_version_by_alias("digits-classifier", "champion")
    assert champion.tags["precision"] == "bf16" and str(champion.version) == "1"

    _silence_class_3_in_bf16(monkeypatch)
    state = training_flow(cfg, ROOT, return_state=True)
    assert state.is_failed()
    with pytest.raises(GateFailed) as failed:
        state.result()
    assert failed.value.exit_code == 4
    report = failed.value.gate_report
    assert "class 3 recall fell by" in report.verdict("bf16").reason
    assert not report.verdict("bf16").passed and report.selected is None
    assert str(client.get_model_version_by_alias("digits-classifier", "champion").version) == "1"
    assert [str(v.version) for v in client.search_model_versions("name='digits-classifier'")] == ["1"]


def test_sweep_logs_tradeoff_table_and_pareto_plot_and_names_the_pick(prefect_harness, tracking_store, digits_csv):
    from flows.sweep import sweep_flow

    cfg = with_data_path(load_config(overrides=TINY + ["sweep.precisions=fp32,bf16", "sweep.batch_sizes=64,128"]),
                         str(digits_csv))
    out = sweep_flow(cfg, ROOT)
    assert {(p.precision, p.batch_size) for p in out.points} == {("fp32", 64), ("bf16", 64), ("fp32", 128),
                                                                  ("bf16", 128)}
    assert any(p.pareto for p in out.points)
    assert dict(out.picks)[128] in ("fp32", "bf16")
    assert "The gate picks: batch 64:" in out.table
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("mpops").experiment_id],
                              f"tags.mlflow.parentRunId = '{out.parent_run_id}'")
    assert sorted(r.info.run_name for r in runs) == ["bf16 b128", "bf16 b64", "fp32 b128", "fp32 b64"]
    files = {f.path for f in client.list_artifacts(out.parent_run_id, "sweep")}
    assert {"sweep/pareto.png", "sweep/tradeoff.md"} <= files
    assert out.plot.read_bytes()[:4] == b"\x89PNG"
    assert client.search_model_versions("name='digits-classifier'") == []  # a sweep registers nothing


def test_noise_floor_reports_spread_and_flags_tolerances_tighter_than_the_noise(prefect_harness, tracking_store,
                                                                                 digits_csv):
    from flows.sweep import noise_floor_flow

    # a zero tolerance is tighter than any seed-to-seed noise that exists
    cfg = with_data_path(load_config(overrides=TINY + ["gate.max_class_recall_drop=0.0"]), str(digits_csv))
    out = noise_floor_flow(cfg, ROOT, 3)
    assert out.seeds == (0, 1, 2) and len(set(out.accuracies)) > 1  # different seeds, different models
    rows = {r.config_key: r for r in out.rows}
    per_class = rows["gate.max_class_recall_drop"]
    assert per_class.worst > 0 and per_class.tighter_than_noise
    assert per_class.suggested >= per_class.worst
    assert rows["gate.min_agreement"].worst < 1.0
    assert "| largest per-class recall drop | gate.max_class_recall_drop |" in out.report
    assert "**yes**" in out.report
    assert dataclasses.is_dataclass(out)
