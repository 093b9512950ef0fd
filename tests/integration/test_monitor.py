"""`mpops monitor` in-process against a model registered once for the module (champion + its fp32 twin)."""
from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from tests.conftest import _use_store, fresh_store, mpops

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# min_speedup: bf16 may become the champion even when this noisy machine measures it slower than fp32; the gate
# still picks the faster one, so either precision can win and the tests hold for both.
TINY = ["train.hidden_size=64", "train.hidden_layers=1", "train.epochs=5", "train.batch_size=128", "probe.steps=0",
        "serving.check=false",
        "validation.label_errors=false", "gate.min_speedup=0.01"]
SHIFTED = ("pixel_20", "pixel_36", "pixel_43")


@pytest.fixture(scope="module")
def registered(prefect_harness, tmp_path_factory, digits_frame, session_store):
    """One training run into a private store; yields the folder, --set overrides and the test rows."""
    from pipeline.core.data import assign_split

    folder = tmp_path_factory.mktemp("monitor")
    uri = fresh_store(folder / "mlflow.db")
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    _use_store(uri)
    data = folder / "digits.csv"
    digits_frame.to_csv(data, index=False)
    sets = [f"data.path={data}", f"validation.report_dir={folder / 'validation'}",
            f"train.checkpoint_dir={folder / 'ckpt'}", f"monitor.report_dir={folder / 'report'}",
            f"monitor.keep_dir={folder / 'drifted'}", *TINY]
    code = mpops("run", "--precisions", "fp32,bf16", *[a for s in sets for a in ("--set", s)])
    assert code == 0
    test_rows = digits_frame[(assign_split(digits_frame, "label", 0.2, 0) == "test").to_numpy()]
    yield folder, sets, test_rows
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved
    _use_store(session_store)


def _monitor(registered, frame: pd.DataFrame | None, name: str, *extra: str) -> tuple[int, str]:
    folder, sets, _ = registered
    path = folder / name
    if frame is not None:
        frame.to_csv(path, index=False)
    return mpops("monitor", "--batch", str(path), *[a for s in sets for a in ("--set", s)], *extra)


def _last_monitor_run():
    from mlflow import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name("mpops-monitoring")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]


def test_registration_stores_the_reference_and_the_fp32_twin(registered):
    import mlflow
    from mlflow import MlflowClient

    from pipeline.core.drift import ReferenceStats

    client = MlflowClient()
    champion = client.get_model_version_by_alias("digits-classifier", "champion")
    names = {a.path for a in client.list_artifacts(champion.run_id, "monitoring")}
    assert names == {"monitoring/reference.json", "monitoring/fp32_twin"}
    twin = {a.path for a in client.list_artifacts(champion.run_id, "monitoring/fp32_twin")}
    assert twin == {"monitoring/fp32_twin/weights.pt", "monitoring/fp32_twin/meta.json"}
    meta = json.loads(mlflow.artifacts.load_text(f"runs:/{champion.run_id}/monitoring/fp32_twin/meta.json"))
    assert meta["precision"] == "fp32" and meta["spec"]["hidden_size"] == 64 and len(meta["feature_columns"]) == 64
    ref = ReferenceStats.from_json(mlflow.artifacts.load_text(f"runs:/{champion.run_id}/monitoring/reference.json"))
    assert ref.precision == champion.tags["precision"] and ref.train_rows == 1437 and ref.test_rows == 360
    assert ref.test_accuracy == pytest.approx(float(champion.tags["eval.accuracy"]), abs=1e-6)
    assert 0.9 <= ref.agreement_rate <= 1.0 and len(ref.features) == 64
    assert sum(ref.prediction_shares) == pytest.approx(1.0)
    cal = ref.calibration  # temperature scaling of the champion's test-split probabilities
    assert cal.rows == 360 and cal.temperature > 0 and cal.accuracy == pytest.approx(ref.test_accuracy)


def test_unchanged_test_rows_do_not_drift(registered, capsys):
    _, _, test_rows = registered
    code = _monitor(registered, test_rows, "unchanged.csv")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Verdict: no drift: 0 of 64 features drifted" in out
    run = _last_monitor_run()
    assert run.data.tags["monitor.drifted"] == "false" and run.data.tags["monitor.model_version"] == "1"
    assert run.data.metrics["monitor.drifted_share"] == 0.0
    # The same rows the reference was computed on: same predictions, same accuracy, same twin agreement.
    assert run.data.metrics["monitor.prediction_psi"] == pytest.approx(0.0, abs=1e-9)
    assert run.data.metrics["monitor.accuracy"] == pytest.approx(run.data.metrics["monitor.reference_accuracy"])
    assert run.data.metrics["monitor.agreement_drop"] == pytest.approx(0.0, abs=1e-9)
    # The estimate without labels on the rows it was calibrated on: within the interval it reports.
    m = run.data.metrics
    assert m["monitor.estimated_accuracy_low"] <= m["monitor.accuracy"] <= m["monitor.estimated_accuracy_high"]
    assert abs(m["monitor.estimation_error"]) < 0.03 and "Estimated accuracy without labels" in out
    assert "monitor.kept" not in run.data.tags
    from pipeline.core.provenance import dvc_hash

    [batch] = run.inputs.dataset_inputs  # the batch in the run's Datasets panel, digest = its DVC hash
    digest = dvc_hash(registered[0] / "unchanged.csv")
    assert (batch.dataset.name, batch.dataset.digest) == ("unchanged-monitor", digest)
    assert [(t.key, t.value) for t in batch.tags] == [("mlflow.data.context", "monitor")]


def test_shifted_features_drift_and_are_named(registered, capsys):
    folder, _, test_rows = registered
    shifted = test_rows.copy()
    for column in SHIFTED:
        shifted[column] = shifted[column] + 8
    code = _monitor(registered, shifted, "shifted.csv")
    captured = capsys.readouterr()
    assert code == 5
    [first] = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert first.startswith("error: monitor: drift detected in") and "(feature drift); report " in first
    assert first.endswith("or retrain (`mpops run`, or `mpops monitor --retrain`)")
    assert "feature drift: 3 of 64 features drifted" in captured.err
    assert all(c in captured.out and c in captured.err for c in SHIFTED)
    table = pd.read_csv(folder / "report" / "report.csv")
    assert set(table.loc[table["drifted"], "feature"]) == set(SHIFTED)
    assert {p.name for p in (folder / "report" / "plots").iterdir()} >= {f"{c}.png" for c in SHIFTED}
    run = _last_monitor_run()
    assert set(run.data.tags["monitor.drifted_features"].split(",")) == set(SHIFTED)
    assert run.data.tags["monitor.reason"].startswith("drift: feature drift")
    assert run.data.metrics["monitor.psi.pixel_20"] > 0.2 and run.data.metrics["monitor.psi.pixel_0"] < 0.2
    # The drifted batch is kept, dated, pinned, and named in the run.
    kept = run.data.tags["monitor.kept"]
    assert kept.startswith(str(folder / "drifted")) and kept.endswith(".csv") and run.data.tags["monitor.kept_labelled"] == "true"
    assert pd.read_csv(kept).equals(pd.read_csv(folder / "shifted.csv"))
    assert run.data.tags["monitor.kept_md5"] in open(kept + ".dvc").read()
    assert f"Kept: {kept} (DVC md5 {run.data.tags['monitor.kept_md5']}" in captured.out


def test_flow_runs_publish_their_verdict_as_prefect_artifacts(registered):
    """The gate table of the training run, the drift table and report of the monitoring run, and links to MLflow."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    def latest(key: str):
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                          sort=ArtifactSort.CREATED_DESC, limit=1)
        assert found, f"no artifact {key}"
        return found[0]

    gate = latest("mpops-gate")
    assert gate.type == "markdown" and "**Gate: registered digits-classifier version" in gate.data
    assert "| fp32 |" in gate.data or "fp32" in gate.data
    code = _monitor(registered, registered[2], "artifacts.csv")
    assert code == 0
    run = _last_monitor_run()
    drift = latest("mpops-drift")
    assert drift.type == "markdown" and drift.data.startswith("# Drift report:") and "no drift" in drift.description
    table = latest("mpops-drift-features")
    assert table.type == "table" and "psi_cutoff" in table.data and drift.flow_run_id == table.flow_run_id
    link = latest("mpops-monitoring-mlflow-run")
    assert link.type == "markdown" or link.type == "link"
    assert f"/runs/{run.info.run_id}" in link.data and link.flow_run_id == drift.flow_run_id
    version = latest("mpops-monitoring-model-version")
    assert "/#/models/digits-classifier/versions/1" in version.data


def test_values_beyond_fp16_range_are_counted_and_flagged(registered, capsys):
    folder, _, test_rows = registered
    big = test_rows.copy().astype({"pixel_10": "float64"})
    big.iloc[:5, big.columns.get_loc("pixel_10")] = 1e5
    code = _monitor(registered, big, "fp16.csv", "--set", "monitor.keep_drifted=false")
    captured = capsys.readouterr()
    assert code == 5
    assert "fp16 range: 5 values beyond +-65504 (threshold 0) in pixel_10 (5)" in captured.err
    assert "values beyond fp16 range 5" in captured.out
    report = json.loads((folder / "report" / "report.json").read_text())
    assert report["fp16_overflow"] == 5
    assert {f["name"]: f["fp16_overflow"] for f in report["features"] if f["fp16_overflow"]} == {"pixel_10": 5}
    assert (folder / "report" / "plots" / "pixel_10.png").is_file()
    assert _last_monitor_run().data.metrics["monitor.fp16_overflow.pixel_10"] == 5


def test_malformed_batches_exit_3_with_one_clear_line(registered, capsys):
    _, _, test_rows = registered
    cases = [
        (test_rows.drop(columns=["pixel_5"]), "missing.csv", "lacks 1 feature column(s) the model needs: pixel_5"),
        (test_rows.astype({"pixel_7": object}).assign(pixel_7="dark"), "text.csv", "non-numeric values in pixel_7"),
        (None, "nowhere.csv", "does not exist"),
    ]
    for frame, name, message in cases:
        code = _monitor(registered, frame, name)
        captured = capsys.readouterr()
        assert code == 3, captured.err
        errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], captured.err
        assert "Traceback" not in captured.err


def test_a_missing_model_is_a_clear_error(registered, capsys):
    code = _monitor(registered, registered[2], "unchanged.csv", "--model-uri", "models:/no-such-model@champion")
    err = capsys.readouterr().err
    assert code == 2  # bad usage: no such model; 1 would claim a bug
    assert "error: monitor: cannot load models:/no-such-model@champion" in err and "Traceback" not in err


def test_a_champion_without_a_reference_is_a_clear_error(registered, capsys, monkeypatch):
    """A version registered before drift monitoring existed has no monitoring/ folder in its run."""
    from pipeline.tracking import reference

    monkeypatch.setattr(reference, "REFERENCE_DIR", "not-there")
    code = _monitor(registered, registered[2], "unchanged.csv")
    err = capsys.readouterr().err
    assert code == 2
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert "has no drift reference under not-there/" in line and "register a new version with `mpops run`" in line


def test_as_a_deployment_runs_it_drift_fails_the_flow_run_with_the_reason(registered, monkeypatch):
    """The hourly deployment calls monitor_flow itself: drift is a Failed flow run whose message is the line."""
    from flows.monitoring import monitor_flow
    from pipeline.core.errors import DataValidationError, DriftDetected
    from tests.conftest import ROOT

    folder, sets, test_rows = registered
    monkeypatch.chdir(ROOT)
    shifted = test_rows.copy()
    for column in SHIFTED:
        shifted[column] = shifted[column] + 8
    shifted.to_csv(folder / "deployed.csv", index=False)
    state = monitor_flow(batch=str(folder / "deployed.csv"), overrides=sets, return_state=True)
    assert state.is_failed() and f"monitor: drift detected in {folder / 'deployed.csv'} (feature drift)" in state.message
    with pytest.raises(DriftDetected) as drift:
        state.result()
    assert "feature drift: 3 of 64 features drifted" in drift.value.detail
    state = monitor_flow(batch=str(folder / "nowhere.csv"), overrides=sets, return_state=True)
    assert state.is_failed() and "does not exist" in state.message
    with pytest.raises(DataValidationError):
        state.result()


def test_retrain_on_drift_trains_on_pinned_data_plus_labelled_kept_batches(registered, capsys):
    """Last in the module: it registers version 2. A batch without labels is kept but not trained on."""
    from mlflow import MlflowClient

    from pipeline.core.shifts import pixel_shift

    folder, _, test_rows = registered
    moved = test_rows.copy()
    features = [c for c in moved.columns if c != "label"]
    moved[features] = pixel_shift(moved[features].to_numpy()).astype(int)  # in range: validation accepts it
    keep = ["--set", f"monitor.keep_dir={folder / 'kept-for-retrain'}"]
    assert _monitor(registered, moved[features], "unlabelled.csv", *keep) == 5
    capsys.readouterr()
    code = _monitor(registered, moved, "retrain.csv", "--retrain", *keep)
    captured = capsys.readouterr()
    out = captured.out
    assert code == 5
    assert ("Retrain: retrained: registered digits-classifier version 2 as " in out
            and "1 labelled kept batch(es) added to the pinned data; 1 kept without labels, not trained on" in out)
    [error] = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert "; retrain: retrained: registered digits-classifier version 2" in error
    assert _last_monitor_run().data.tags["monitor.retrain"].startswith("retrained: registered digits-classifier")
    client = MlflowClient()
    v2 = client.get_model_version("digits-classifier", "2")
    sources = v2.tags.get("data.sources") or client.get_run(v2.run_id).data.tags["data.sources"]
    names = [s.split("=")[0] for s in sources.split(", ")]
    assert names[0].startswith("drifted-") and "retrain-" in names[0] and names[1] == "pinned-digits.csv"
    assert len(names) == 2  # the unlabelled batch is not among them
