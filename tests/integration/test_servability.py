"""The servability check against a private SQLite store: a fresh process loads the version from the registry
and must predict what the trained model predicts here, else champion does not move."""
from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from pipeline.core.config_load import load_config
from pipeline.core.data import load_dataset, split_dataset
from pipeline.core.promotion import PromotionDecision
from pipeline.core.servability import in_process_predictions, judge
from pipeline.core.train import train
from pipeline.tracking import history, registry, serve_probe
from pipeline.tracking.runs import start_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NAME = "digits-classifier"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits_frame):
    path = tmp_path_factory.mktemp("d") / "digits.csv"
    digits_frame.to_csv(path, index=False)
    cfg = load_config(overrides=["train.hidden_size=32", "train.hidden_layers=1", "train.epochs=3",
                                 "precisions=fp32"])
    sp = split_dataset(load_dataset(path), 0.2, 0)
    return sp, train(sp, cfg.train, "fp32", device=torch.device("cpu"))


def _check(sp, result):
    rows = registry.input_example(sp, 32)
    expected_rows = in_process_predictions(result.model, result.policy, rows.to_numpy(), tuple(sp.classes))
    expected_example = in_process_predictions(result.model, result.policy, registry.input_example(sp).to_numpy(),
                                              tuple(sp.classes))

    def check(version: str):
        report = serve_probe.probe(f"models:/{NAME}/{version}", rows, repeats=3, timeout_s=300)
        return judge(report, expected_example, expected_rows, result.precision)
    return check


def _logged(sp, result, artifacts: Path) -> tuple[str, Path]:
    run_id = start_run("t", "fp32", str(artifacts))
    uri = registry.log_model(run_id, result, sp)
    return uri, Path(mlflow.get_logged_model(uri.split("/")[-1]).artifact_location.removeprefix("file://"))


def test_a_servable_version_passes_and_records_its_latency(tracking_store, trained, tmp_path):
    sp, result = trained
    uri, _ = _logged(sp, result, tmp_path / "a")
    reg = registry.register(NAME, uri, {"precision": "fp32"}, "d", PromotionDecision(True, "no champion yet"),
                            check=_check(sp, result))
    assert reg.serve_check.passed, reg.serve_check.reason
    assert set(reg.aliases) == {"champion", "challenger"}
    client = MlflowClient()
    tags = client.get_model_version(NAME, reg.version).tags
    assert tags["serve.check"] == "passed"
    for key in ("serve.load_s", "serve.p50_ms_b1", "serve.p95_ms_b1", "serve.p50_ms_b64", "serve.p95_ms_b64"):
        assert float(tags[key]) > 0
    run = client.get_run(client.get_model_version(NAME, reg.version).run_id)
    assert run.data.metrics["serve.p95_ms_b64"] >= run.data.metrics["serve.p50_ms_b64"] > 0
    moves = [(e["alias"], e["version"]) for e in history.read(client, NAME)]
    assert moves == [("challenger", reg.version), ("champion", reg.version)]


@pytest.mark.parametrize("plant", ["weights", "code"])
def test_an_unloadable_version_fails_the_check_and_never_takes_champion(tracking_store, trained, tmp_path, plant):
    sp, result = trained
    good_uri, _ = _logged(sp, result, tmp_path / "good")
    first = registry.register(NAME, good_uri, {"precision": "fp32"}, "d", PromotionDecision(True, "no champion"),
                              check=_check(sp, result))
    bad_uri, folder = _logged(sp, result, tmp_path / "bad")
    if plant == "weights":
        (folder / "artifacts" / "bundle" / "weights.pt").unlink()
    else:  # the bundle's code gone: the project is not importable in the fresh process either
        shutil.rmtree(folder / "code")
    bad = registry.register(NAME, bad_uri, {"precision": "fp32"}, "d", PromotionDecision(True, "better", first.version),
                            check=_check(sp, result))
    assert not bad.serve_check.passed
    assert "does not load or score in a fresh process" in bad.serve_check.reason
    # the fresh process fails for the planted reason, not for something else
    assert {"weights": "weights.pt", "code": "No module named 'pipeline'"}[plant] in bad.serve_check.reason, \
        bad.serve_check.reason
    assert bad.aliases == ("challenger",)
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == first.version
    tags = client.get_model_version(NAME, bad.version).tags
    assert tags["serve.check"] == "failed" and "servability check" in tags["registry.champion_decision"]


def test_the_training_flow_checks_servability_before_champion_moves(prefect_harness, tracking_store, digits_csv,
                                                                    tmp_path, monkeypatch):
    """First run: the real check passes and champion moves. Second run: the fresh process cannot load the version
    (planted), so the flow fails with the check's reason (exit 4) and the new version is challenger only."""
    from flows.training import training_flow
    from pipeline.core.errors import NotServable
    from pipeline.core.servability import ProbeReport
    from tests.conftest import ROOT

    monkeypatch.chdir(ROOT)
    overrides = {"train.hidden_size": 64, "train.hidden_layers": 1, "train.epochs": 6, "train.batch_size": 128,
                 "precisions": "fp32", "probe.steps": 0, "serving.check_repeats": 3,
                 "validation.report_dir": str(tmp_path / "val"), "train.checkpoint_dir": str(tmp_path / "ckpt")}
    first = training_flow(data=str(digits_csv), overrides=overrides)
    assert first.registration.serve_check.passed, first.registration.serve_check.reason
    client = MlflowClient()
    assert client.get_model_version(NAME, "1").tags["serve.check"] == "passed"
    monkeypatch.setattr(serve_probe, "probe", lambda *a, **k: ProbeReport(error="ModuleNotFoundError: pipeline"))
    state = training_flow(data=str(digits_csv), overrides={**overrides, "train.seed": 1}, return_state=True)
    assert state.is_failed()
    with pytest.raises(NotServable, match="version 2 failed the servability check.*challenger only") as err:
        state.result()
    assert err.value.exit_code == 4
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "2"
    assert "ModuleNotFoundError" in client.get_model_version(NAME, "2").tags["serve.reason"]
