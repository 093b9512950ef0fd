"""Registration against a private SQLite store, without Prefect."""
from __future__ import annotations

import pytest
import torch
from mlflow import MlflowClient

from pipeline.config import load_config
from pipeline.data import load_dataset, split_dataset
from pipeline.evaluate import evaluate
from pipeline.gate import CandidateMetrics, gate
from pipeline.precision import make_policy
from pipeline import registry
from pipeline.provenance import collect_provenance
from pipeline.train import train
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits_frame):
    path = tmp_path_factory.mktemp("d") / "digits.csv"
    digits_frame.to_csv(path, index=False)
    cfg = load_config(overrides=["train.hidden_size=64", "train.hidden_layers=1", "train.epochs=6",
                                 "precisions=fp32"])
    ds = load_dataset(path)
    sp = split_dataset(ds, 0.2, 0)
    policy = make_policy("fp32", torch.device("cpu"))
    result = train(sp, cfg.train, policy)
    ev = evaluate(result.model, sp, policy)
    report = gate([CandidateMetrics("fp32", ev.accuracy, ev.macro_f1, result.samples_per_s,
                                    result.peak_memory_bytes, 0)], cfg.gate)
    return cfg, sp, result, ev, report, collect_provenance(ROOT, ds.files)


def _register(tracking_store, trained):
    cfg, sp, result, ev, report, prov = trained
    parent = registry.start_run("t", "pipeline", None)
    child = registry.start_run("t", "fp32", None, parent_id=parent)
    return registry.register(cfg, child, parent, result, ev, sp, report, prov, validation_passed=True)


def test_failure_mid_registration_leaves_no_version_and_no_alias(tracking_store, trained, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("store went away")

    monkeypatch.setattr(MlflowClient, "update_model_version", broken)
    with pytest.raises(RuntimeError, match="store went away"):
        _register(tracking_store, trained)
    client = MlflowClient()
    assert client.search_model_versions("name='digits-classifier'") == []
    assert client.get_registered_model("digits-classifier").aliases == {}


def test_champion_moves_only_for_an_equal_or_better_model(tracking_store, trained):
    client = MlflowClient()
    first = _register(tracking_store, trained)
    assert set(first.aliases) == {"champion", "challenger"}
    # Pretend the champion was better than anything this run can do.
    client.set_model_version_tag("digits-classifier", first.version, "eval.accuracy", "0.999999")
    second = _register(tracking_store, trained)
    assert second.aliases == ("challenger",) and "champion stays" in second.champion_reason
    assert str(client.get_model_version_by_alias("digits-classifier", "champion").version) == first.version
    assert str(client.get_model_version_by_alias("digits-classifier", "challenger").version) == second.version
