"""The Prefect flow in-process, on the session's Prefect test server."""
from __future__ import annotations

import asyncio

import pytest

from pipeline.config import load_config, with_data_path
from pipeline.errors import DataValidationError
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TINY = ["train.hidden_size=64", "train.hidden_layers=1", "train.epochs=5", "train.batch_size=128", "precisions=fp32,bf16",
        "probe.steps=0"]  # ~0.93 accurate; the probe has its own test


def _task_names(flow_run_id) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def go():
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            return {r.name.rsplit("-", 1)[0] for r in runs}

    return asyncio.run(go())


def test_flow_runs_every_stage_as_a_task(prefect_harness, tracking_store, digits_csv):
    from flows.training import training_flow

    cfg = with_data_path(load_config(overrides=TINY), str(digits_csv))
    state = training_flow(cfg, ROOT, return_state=True)
    assert state.is_completed(), state.message
    outcome = state.result()
    assert [r.precision for r in outcome.results] == ["fp32", "bf16"]
    assert outcome.registration.version == "1"
    assert {"load-data", "collect-provenance", "validate-data", "split-data", "train-precision",
            "gate-candidates", "register-model"} <= _task_names(state.state_details.flow_run_id)


def test_flow_fails_on_bad_data_with_the_reason(prefect_harness, tracking_store, tmp_path, digits_frame):
    from flows.training import training_flow

    bad = digits_frame.copy()
    bad["label"] = 3
    bad.loc[0, "label"] = 11
    bad.to_csv(tmp_path / "bad.csv", index=False)
    cfg = with_data_path(load_config(overrides=TINY), str(tmp_path / "bad.csv"))
    state = training_flow(cfg, ROOT, return_state=True)
    assert state.is_failed()
    with pytest.raises(DataValidationError, match="label: column values to be in set"):
        state.result()


def test_bad_split_column_fails_as_a_data_error(prefect_harness, tracking_store, tmp_path, digits_frame):
    from flows.training import training_flow

    digits_frame.assign(split="train").to_csv(tmp_path / "nosplit.csv", index=False)
    cfg = with_data_path(load_config(overrides=TINY), str(tmp_path / "nosplit.csv"))
    state = training_flow(cfg, ROOT, return_state=True)
    assert state.is_failed() and "train-test leakage" in state.message
    with pytest.raises(DataValidationError, match="data validation failed: 1 of") as err:
        state.result()
    assert "the split column must mark some rows, not all, as test" in err.value.detail


def test_resume_reuses_a_precision_that_finished_before_the_kill(prefect_harness, tracking_store, tmp_path,
                                                                  digits_csv):
    """fp32 finished and was checkpointed, then the run died: `--resume` takes fp32 from its checkpoint."""
    import torch
    from mlflow import MlflowClient

    from flows.training import training_flow
    from pipeline.checkpoint import Checkpointing, checkpoint_path, run_key
    from pipeline.data import load_dataset, split_dataset
    from pipeline.precision import make_policy
    from pipeline.provenance import collect_provenance
    from pipeline.train import train

    folder = tmp_path / "ckpt"
    cfg = with_data_path(load_config(overrides=[*TINY, f"train.checkpoint_dir={folder}",
                                                f"validation.report_dir={tmp_path / 'val'}"]), str(digits_csv))
    key = run_key(cfg.train, cfg.data, collect_provenance(ROOT, (str(digits_csv),)).data_md5)
    path = checkpoint_path(folder, key, "fp32")
    sp = split_dataset(load_dataset(digits_csv), cfg.data.test_size, cfg.data.split_seed)
    before = train(sp, cfg.train, make_policy("fp32", torch.device("cpu")), Checkpointing(path, 1, False))

    state = training_flow(cfg, ROOT, resume=True, return_state=True)
    assert state.is_completed(), state.message
    fp32 = state.result().results[0]
    assert fp32.samples_per_s == before.samples_per_s  # not retrained: the figures of the finished run
    assert fp32.epoch_losses == before.epoch_losses
    runs = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("mpops").experiment_id],
                                      "tags.mlflow.runName = 'fp32'")
    assert runs[0].data.metrics["train.samples_per_s"] == pytest.approx(before.samples_per_s)
    assert not (folder / key).exists()  # a completed run leaves nothing to resume


def test_probe_drops_a_broken_candidate_before_full_training(prefect_harness, tracking_store, tmp_path, digits_csv):
    """fp16 with a 2**100 loss scale overflows every step: the probe drops it, only fp32 trains."""
    from mlflow import MlflowClient

    from flows.training import training_flow

    overrides = [*TINY[:4], "precisions=fp32,fp16", "train.init_scale=1.2676506002282294e30", "probe.steps=12",
                 f"train.checkpoint_dir={tmp_path / 'ckpt'}", f"validation.report_dir={tmp_path / 'val'}"]
    state = training_flow(with_data_path(load_config(overrides=overrides), str(digits_csv)), ROOT, return_state=True)
    assert state.is_completed(), state.message
    outcome = state.result()
    assert [r.precision for r in outcome.results] == ["fp32"]
    [fp16] = [p for p in outcome.probes if p.precision == "fp16"]
    assert fp16.dropped and "12 of 12 probe steps skipped for overflow" in fp16.reason
    parent = MlflowClient().get_run(outcome.parent_run_id)
    assert parent.data.tags["probe.dropped"].startswith("fp16: ")
    assert "probe.fp16.samples_per_s" in parent.data.metrics
