"""Registration against a private SQLite store, without Prefect: the registry carries out the decision it is given."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from mlflow import MlflowClient

from pipeline.core.config_load import load_config
from pipeline.core.data import load_dataset, split_dataset
from pipeline.core.evaluate import evaluate
from pipeline.core.gate import CandidateMetrics, gate
from pipeline.core.promotion import PromotionDecision, decide_promotion
from pipeline.core.provenance import collect_provenance
from pipeline.core.train import train
from pipeline.render.markdown import version_description
from pipeline.tracking import registry
from pipeline.tracking.runs import start_run
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NAME = "digits-classifier"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits_frame):
    path = tmp_path_factory.mktemp("d") / "digits.csv"
    digits_frame.to_csv(path, index=False)
    cfg = load_config(overrides=["train.hidden_size=64", "train.hidden_layers=1", "train.epochs=6",
                                 "precisions=fp32"])
    ds = load_dataset(path)
    sp = split_dataset(ds, 0.2, 0)
    result = train(sp, cfg.train, "fp32", device=torch.device("cpu"))
    ev = evaluate(result.model, sp, result.policy)
    report = gate([CandidateMetrics.of(result, ev)], sp.y_test, cfg.gate, classes=sp.classes)
    return cfg, sp, result, ev, report, collect_provenance(ROOT, ds.files)


def _register(trained, result=None, ev=None) -> registry.Registration:
    """What the flow does: log the model, score the current champion, decide, register."""
    cfg, sp, base, base_ev, report, prov = trained
    result, ev = result or base, ev or base_ev
    parent = start_run("t", "pipeline", None)
    child = start_run("t", "fp32", None, parent_id=parent)
    uri = registry.log_model(child, result, sp)
    decision = decide_promotion(ev, registry.current_champion(NAME, sp), sp.y_test, cfg.gate,
                                tuple(map(str, sp.classes)))
    tags = registry.version_tags(result, ev, report, prov, True, parent)
    return registry.register(NAME, uri, tags, version_description("fp32", ev, report, parent, "#", prov), decision)


def test_failure_mid_registration_leaves_no_version_and_no_alias(tracking_store, trained, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("store went away")

    monkeypatch.setattr(MlflowClient, "update_model_version", broken)
    with pytest.raises(RuntimeError, match="store went away"):
        _register(trained)
    client = MlflowClient()
    assert client.search_model_versions(f"name='{NAME}'") == []
    assert client.get_registered_model(NAME).aliases == {}


def test_the_registry_moves_champion_only_when_told(tracking_store, trained):
    cfg, sp, result, ev, report, prov = trained
    first = _register(trained)
    assert set(first.aliases) == {"champion", "challenger"} and first.champion_reason == "no champion yet"
    uri = registry.log_model(start_run("t", "fp32", None), result, sp)
    kept = registry.register(NAME, uri, {"precision": "fp32"}, "held back", PromotionDecision(False, "told to stay"))
    assert kept.aliases == ("challenger",)
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == first.version
    assert client.get_model_version(NAME, kept.version).tags["registry.champion_decision"] == "told to stay"


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

    first = _register(trained, bad, bad_ev)
    assert set(first.aliases) == {"champion", "challenger"} and first.champion_reason == "no champion yet"
    second = _register(trained, result, ev)  # better than the champion on the current test rows: it moves
    assert set(second.aliases) == {"champion", "challenger"}, second.champion_reason
    assert "passed the quality comparison against the champion" in second.champion_reason
    third = _register(trained, bad, bad_ev)  # the planted degradation is rejected: the champion stays
    assert third.aliases == ("challenger",)
    assert "champion stays" in third.champion_reason and "class 3 recall fell" in third.champion_reason
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == second.version
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == third.version
    assert client.get_model_version(NAME, third.version).tags["registry.champion_decision"] == third.champion_reason


def test_the_model_bundle_round_trips_through_the_registry(tracking_store, trained):
    """Written once by log_model, read once by the pyfunc flavour: the same predictions in a fresh load."""
    import mlflow
    import numpy as np
    import pandas as pd

    cfg, sp, result, ev, report, prov = trained
    reg = _register(trained)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{reg.version}")
    labels = model.predict(pd.DataFrame(sp.x_test, columns=list(sp.feature_columns)))
    assert np.array_equal(labels, np.array(sp.classes)[ev.predictions])
    bundle = model.unwrap_python_model().bundle
    assert bundle.trained_precision == "fp32" and bundle.spec == result.spec
