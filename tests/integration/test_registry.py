"""Registration against a private SQLite store, without Prefect."""
from __future__ import annotations

import copy
import dataclasses

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
    report = gate([CandidateMetrics.of(result, ev)], sp.y_test, cfg.gate, classes=sp.classes)
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


def _degraded(result):
    """The same model with class 3 silenced: its last layer can no longer pick it."""
    model = copy.deepcopy(result.model)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias[3] = -1e4
    return dataclasses.replace(result, model=model)


def test_champion_moves_only_if_the_new_model_passes_the_quality_comparison(tracking_store, trained):
    cfg, sp, result, ev, report, prov = trained
    client = MlflowClient()
    bad = _degraded(result)
    bad_ev = evaluate(bad.model, sp, bad.policy)
    assert bad_ev.per_class_recall[3] == 0.0

    def register(r, e):
        parent = registry.start_run("t", "pipeline", None)
        child = registry.start_run("t", "fp32", None, parent_id=parent)
        return registry.register(cfg, child, parent, r, e, sp, report, prov, validation_passed=True)

    first = register(bad, bad_ev)
    assert set(first.aliases) == {"champion", "challenger"} and first.champion_reason == "no champion yet"
    second = register(result, ev)  # better than the champion on the current test rows: it moves
    assert set(second.aliases) == {"champion", "challenger"}, second.champion_reason
    assert "passed the quality comparison against the champion" in second.champion_reason
    third = register(bad, bad_ev)  # the planted degradation is rejected: the champion stays
    assert third.aliases == ("challenger",)
    assert "champion stays" in third.champion_reason and "class 3 recall fell" in third.champion_reason
    assert str(client.get_model_version_by_alias("digits-classifier", "champion").version) == second.version
    assert str(client.get_model_version_by_alias("digits-classifier", "challenger").version) == third.version
    assert client.get_model_version("digits-classifier", third.version).tags["registry.champion_decision"] == \
        third.champion_reason


def test_version_carries_model_card_gate_report_and_description(tracking_store, trained):
    reg = _register(tracking_store, trained)
    client = MlflowClient()
    version = client.get_model_version("digits-classifier", reg.version)
    assert "| group | check | value | threshold | verdict |" in version.description
    assert "/runs/" in version.description
    files = {f.path for f in client.list_artifacts(version.run_id)} | \
        {f.path for f in client.list_artifacts(version.run_id, "gate")}
    assert {"model_card.md", "gate/report.md", "gate/report.json"} <= files
    card = client.download_artifacts(version.run_id, "model_card.md")
    text = open(card).read()
    assert "## Intended use" in text and "## Limits" in text and version.tags["data.md5"] in text
