"""The Prefect flow in-process, on the session's Prefect test server."""
from __future__ import annotations

import asyncio

import pytest

from pipeline.config import load_config, with_data_path
from pipeline.errors import DataValidationError
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TINY = ["train.hidden_size=64", "train.hidden_layers=1", "train.epochs=5", "precisions=fp32,bf16"]  # ~0.93 accurate


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
