"""Registration against a private SQLite store, without Prefect: the registry carries out the decision it is given."""
from __future__ import annotations

import copy
import dataclasses
import os

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


def _decide(cfg, sp, ev):
    return decide_promotion(ev, registry.current_champion(NAME, sp), sp.y_test, cfg.gate, tuple(map(str, sp.classes)))


def test_a_stale_decision_is_made_again_against_the_champion_of_now(tracking_store, trained):
    """Run A decides while there is no champion; run B takes champion before A registers. A's move is a
    compare-and-set: the champion changed, so A is compared with B's model and, being worse, stays challenger."""
    from functools import partial

    cfg, sp, result, ev, report, prov = trained
    bad = _degraded(result)
    bad_ev = evaluate(bad.model, sp, bad.policy)
    uri = registry.log_model(start_run("t", "fp32", None), bad, sp)
    stale = _decide(cfg, sp, bad_ev)
    assert stale.move_champion and stale.against is None  # "no champion yet"
    winner = _register(trained)  # the other run, in between
    redecide = partial(_decide, cfg, sp, bad_ev)
    late = registry.register(NAME, uri, {"precision": "fp32"}, "late", stale, redecide=redecide)
    assert late.aliases == ("challenger",), late.champion_reason
    assert f"vs champion v{winner.version}" in late.champion_reason and "champion stays" in late.champion_reason
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == winner.version
    assert client.get_model_version(NAME, late.version).tags["registry.champion_decision"] == late.champion_reason
    # Without a way to decide again, a stale move is refused rather than carried out.
    blind = registry.register(NAME, uri, {"precision": "fp32"}, "blind", PromotionDecision(True, "no champion yet"))
    assert blind.aliases == ("challenger",) and "took champion meanwhile" in blind.champion_reason
    assert client.search_registered_models(f"name='{NAME}.champion-lock'") == []  # released


def test_a_lock_left_by_a_killed_run_is_broken_once_stale(tracking_store):
    from pipeline.tracking.champion_lock import champion_lock, lock_name

    client = MlflowClient()
    client.create_registered_model(lock_name(NAME))  # as a run killed while registering leaves it
    with pytest.raises(TimeoutError, match="stayed taken"):
        with champion_lock(client, NAME, wait_s=1.0, stale_after_s=3600):
            pass
    with champion_lock(client, NAME, wait_s=10.0, stale_after_s=0.0):
        assert client.get_registered_model(lock_name(NAME)).tags["mpops.lock.owner"].endswith(f":{os.getpid()}")
    assert client.search_registered_models(f"name='{lock_name(NAME)}'") == []


def test_a_model_is_served_in_another_precision_only_when_asked(tracking_store, trained, caplog):
    """A tf32 model (trained on a GPU) on this CPU: refused by default; with the fallback allowed it serves in
    fp32, logs a warning and says so."""
    import mlflow
    import numpy as np
    import pandas as pd

    from pipeline.tracking.pyfunc import FALLBACK

    cfg, sp, result, ev, report, prov = trained
    uri = registry.log_model(start_run("t", "tf32", None), dataclasses.replace(result, precision="tf32"), sp)
    with pytest.raises(Exception, match="trained in tf32, which this device cannot run.*fallback fp32 must be "
                                        "allowed explicitly"):
        mlflow.pyfunc.load_model(uri)
    with caplog.at_level("WARNING"):
        model = mlflow.pyfunc.load_model(uri, model_config={FALLBACK: True})
    bundle = model.unwrap_python_model().bundle
    assert (bundle.trained_precision, bundle.served_precision) == ("tf32", "fp32")
    assert "serving a model trained in tf32 in fp32" in caplog.text
    labels = model.predict(pd.DataFrame(sp.x_test, columns=list(sp.feature_columns)))
    assert np.array_equal(labels, np.array(sp.classes)[ev.predictions])
