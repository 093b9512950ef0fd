"""The Prefect flow in-process, on the session's Prefect test server, called as a deployment calls it."""
from __future__ import annotations

import asyncio
import logging

import pytest

from pipeline.core.errors import ConfigError, DataValidationError
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TINY = {"train.hidden_size": 64, "train.hidden_layers": 1, "train.epochs": 5, "train.batch_size": 128,
        "precisions": "fp32,bf16", "probe.steps": 0,
        "serving.check": False}  # ~0.93 accurate; the probe has its own test


def _task_names(flow_run_id) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def go():
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            return {r.name.rsplit("-", 1)[0] for r in runs}

    return asyncio.run(go())


def _private(tmp_path) -> dict:
    return {"validation.report_dir": str(tmp_path / "val"), "train.checkpoint_dir": str(tmp_path / "ckpt")}


def test_flow_runs_every_stage_as_a_task(prefect_harness, tracking_store, digits_csv, tmp_path, monkeypatch):
    from flows.training import training_flow

    monkeypatch.chdir(ROOT)
    state = training_flow(data=str(digits_csv), overrides={**TINY, **_private(tmp_path)}, return_state=True)
    assert state.is_completed(), state.message
    outcome = state.result()
    assert [r.precision for r in outcome.results] == ["fp32", "bf16"]
    assert outcome.registration.version == "1"
    assert {"load-data", "collect-provenance", "validate-data", "split-data", "train-precision", "gate-candidates",
            "log-model", "decide-promotion", "register-model"} <= _task_names(state.state_details.flow_run_id)
    _version_carries_model_card_gate_report_and_description()


def _version_carries_model_card_gate_report_and_description():
    from mlflow import MlflowClient

    client = MlflowClient()
    version = client.get_model_version("digits-classifier", "1")
    assert "| group | check | value | threshold | detects" in version.description
    assert "/runs/" in version.description
    files = {f.path for f in client.list_artifacts(version.run_id)} | \
        {f.path for f in client.list_artifacts(version.run_id, "gate")}
    assert {"model_card.md", "gate/report.md", "gate/report.json"} <= files
    text = open(client.download_artifacts(version.run_id, "model_card.md")).read()
    assert "## Intended use" in text and "## Limits" in text and version.tags["data.md5"] in text


def test_a_user_error_fails_the_flow_run_with_its_line_and_no_traceback(prefect_harness, monkeypatch, caplog):
    """The deployment path: a bad parameter fails the run the normal way, its state message holding the line."""
    from flows.training import training_flow

    monkeypatch.chdir(ROOT)
    with caplog.at_level(logging.INFO):
        state = training_flow(overrides={"train.epochs": 0}, return_state=True)
    assert state.is_failed() and state.message.endswith("config: train.epochs must be positive")
    with pytest.raises(ConfigError, match="train.epochs must be positive"):
        state.result()
    logged = [r for r in caplog.records if "train.epochs must be positive" in r.getMessage()]
    assert logged and all(r.exc_info is None for r in logged)  # a user error is no crash: no traceback


def test_flow_fails_on_bad_data_with_the_reason(prefect_harness, tracking_store, tmp_path, digits_frame,
                                                monkeypatch):
    from flows.training import training_flow

    monkeypatch.chdir(ROOT)
    bad = digits_frame.copy()
    bad["label"] = 3
    bad.loc[0, "label"] = 11
    bad.to_csv(tmp_path / "bad.csv", index=False)
    state = training_flow(data=str(tmp_path / "bad.csv"), overrides={**TINY, **_private(tmp_path)},
                          return_state=True)
    assert state.is_failed()
    with pytest.raises(DataValidationError, match="label: column values to be in set"):
        state.result()


def test_bad_split_column_fails_as_a_data_error(prefect_harness, tracking_store, tmp_path, digits_frame, monkeypatch):
    from flows.training import training_flow

    monkeypatch.chdir(ROOT)
    digits_frame.assign(split="train").to_csv(tmp_path / "nosplit.csv", index=False)
    state = training_flow(data=str(tmp_path / "nosplit.csv"), overrides={**TINY, **_private(tmp_path)},
                          return_state=True)
    assert state.is_failed() and "train-test leakage" in state.message
    with pytest.raises(DataValidationError, match="data validation failed: 1 of") as err:
        state.result()
    assert "the split column must mark some rows, not all, as test" in err.value.detail


def test_resume_reuses_a_precision_that_finished_before_the_kill(prefect_harness, tracking_store, tmp_path,
                                                                  digits_csv, monkeypatch):
    """fp32 finished, was checkpointed and evaluated, then the run died: `--resume` takes fp32 and its
    evaluation from the checkpoint folder, training and evaluating only what had not finished."""
    import dataclasses

    import torch
    from mlflow import MlflowClient

    from flows.common import resolve
    from flows.training import training_flow
    from pipeline.core.checkpoint import Checkpointing, checkpoint_path, run_key, save_eval
    from pipeline.core.data import load_dataset, split_dataset
    from pipeline.core.evaluate import Latency, evaluate
    from pipeline.core.provenance import collect_provenance
    from pipeline.core.train import train

    monkeypatch.chdir(ROOT)
    overrides = {**TINY, **_private(tmp_path)}
    _, cfg = resolve(data=str(digits_csv), overrides=overrides)
    key = run_key(cfg.train, cfg.data, collect_provenance(ROOT, (str(digits_csv),)).data_md5)
    sp = split_dataset(load_dataset(digits_csv), cfg.data.test_size, cfg.data.split_seed)
    ckpt = checkpoint_path(tmp_path / "ckpt", key, "fp32")
    before = train(sp, cfg.train, "fp32", Checkpointing(ckpt, 1, False), device=torch.device("cpu"))
    # Latency figures no second measurement would reproduce: they show which evaluation the run used.
    kept = dataclasses.replace(evaluate(before.model, sp, before.policy, cfg.gate.fgsm_epsilon, 2),
                               latency=Latency(1.0, 2.0, 3.0, 4.0, 5.0))
    save_eval(ckpt, kept)

    state = training_flow(data=str(digits_csv), overrides=overrides, resume=True, return_state=True)
    assert state.is_completed(), state.message
    fp32, fp32_eval = state.result().results[0], state.result().evals[0]
    assert fp32.restored and fp32.samples_per_s == before.samples_per_s  # not retrained: the finished run's figures
    assert fp32.epoch_losses == before.epoch_losses
    assert fp32_eval.latency == kept.latency and (fp32_eval.probabilities == kept.probabilities).all()
    assert not state.result().results[1].restored  # bf16 had not started: trained now
    runs = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("mpops").experiment_id],
                                      "tags.mlflow.runName = 'fp32'")
    assert runs[0].data.metrics["train.samples_per_s"] == pytest.approx(before.samples_per_s)
    assert runs[0].data.metrics["eval.latency.p50_ms_batch256"] == 3.0 and runs[0].data.tags["train.restored"] == "true"
    assert not (tmp_path / "ckpt" / key).exists()  # a completed run leaves nothing to resume


def test_probe_drops_a_broken_candidate_before_full_training(prefect_harness, tracking_store, tmp_path, digits_csv,
                                                             monkeypatch):
    """fp16 with a 2**100 loss scale overflows every step: the probe drops it, only fp32 trains."""
    from mlflow import MlflowClient

    from flows.training import training_flow

    monkeypatch.chdir(ROOT)
    # probe.max_slowdown: fp16 is slow on a CPU, and the probe's deadline would stop it before 12 steps
    overrides = {**TINY, **_private(tmp_path), "precisions": "fp32,fp16", "train.init_scale": 1.2676506002282294e30,
                 "probe.steps": 12, "probe.max_slowdown": 1000}
    state = training_flow(data=str(digits_csv), overrides=overrides, return_state=True)
    assert state.is_completed(), state.message
    outcome = state.result()
    assert [r.precision for r in outcome.results] == ["fp32"]
    [fp16] = [p for p in outcome.probes if p.precision == "fp16"]
    assert fp16.dropped and "12 of 12 probe steps skipped for overflow" in fp16.reason
    parent = MlflowClient().get_run(outcome.parent_run_id)
    assert parent.data.tags["probe.dropped"].startswith("fp16: ")
    assert "probe.fp16.samples_per_s" in parent.data.metrics


def test_an_unreachable_tracking_store_stops_the_run_before_training(prefect_harness, tracking_store, tmp_path,
                                                                      digits_csv, monkeypatch, capsys):
    """Exit 6 with one line naming the store, after the retry budget, and nothing trained."""
    import socket

    from flows.cli import main
    from tests.integration.test_servers import exit_code

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once the socket closes
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(ROOT)
    sets = [f"{k}={v}" for k, v in {**TINY, **_private(tmp_path), "registry.unreachable_after_s": 2}.items()]
    code = exit_code(main, ["run", "--data", str(digits_csv), *[a for s in sets for a in ("--set", s)]])
    assert code == 6
    first = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("error: "))
    assert first == f"error: MLflow tracking store {uri} unreachable (Connection refused); nothing was registered"
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "val").exists()  # stopped before validation


def test_require_pinned_refuses_other_data_with_exit_3(prefect_harness, tracking_store, tmp_path, digits_csv,
                                                       monkeypatch, capsys):
    from mlflow import MlflowClient

    from flows.cli import main
    from tests.integration.test_servers import exit_code

    monkeypatch.chdir(ROOT)
    sets = [f"{k}={v}" for k, v in {**TINY, **_private(tmp_path)}.items()]
    code = exit_code(main, ["run", "--require-pinned", "--data", str(digits_csv),
                            *[a for s in sets for a in ("--set", s)]])
    assert code == 3
    first = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("error: "))
    assert first.startswith(f"error: data: --require-pinned: {digits_csv} has DVC md5 ")
    assert MlflowClient().get_experiment_by_name("mpops") is None  # refused before any run
