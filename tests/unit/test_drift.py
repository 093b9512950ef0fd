"""Drift statistics and verdicts on constructed arrays; no model, no MLflow."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.core import batch as batches
from pipeline.core import drift
from pipeline.render.drift import write_report
from pipeline.core.config import MonitorConfig
from pipeline.core.config_load import load_config
from pipeline.core.errors import ConfigError, DataValidationError

FEATURES = tuple(f"f{i}" for i in range(8))
CLASSES = (0, 1, 2)


@pytest.fixture(scope="module")
def train_x() -> np.ndarray:
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, size=(3000, len(FEATURES)))
    x[:, 7] = rng.integers(0, 17, size=3000)  # discrete, like the digits' pixels
    return x


@pytest.fixture(scope="module")
def reference(train_x) -> drift.ReferenceStats:
    pred = np.tile(np.array(CLASSES), 200)  # 600 test rows, a third per class
    twin = pred.copy()
    twin[:6] = (twin[:6] + 1) % 3  # 99% agreement at registration
    return drift.reference_stats(train_x, FEATURES, CLASSES, "bf16", pred, 0.95, twin, MonitorConfig())


def _fresh(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=(n, len(FEATURES)))
    x[:, 7] = rng.integers(0, 17, size=n)
    return x


def _balanced(n: int) -> np.ndarray:
    return np.arange(n) % 3


def test_psi_is_zero_for_equal_shares_and_matches_the_formula():
    assert drift.psi(np.array([0.2, 0.3, 0.5]), np.array([0.2, 0.3, 0.5])) == 0.0
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert drift.psi(np.array([0.5, 0.5]), np.array([0.9, 0.1])) == pytest.approx(expected)
    # An empty reference bin is floored, not infinite.
    assert math.isfinite(drift.psi(np.array([1.0, 0.0]), np.array([0.0, 1.0])))


def test_bins_put_values_outside_the_training_range_in_empty_reference_bins():
    edges = drift.bin_edges(np.zeros(100), 10)  # a constant feature: the digits' border pixels
    shares = drift.bin_shares(np.zeros(100), edges)
    assert shares.tolist() == [0.0, 1.0, 0.0]  # below the minimum, the value itself, above the maximum
    shifted = drift.bin_shares(np.full(50, 3.0), edges)
    assert shifted.tolist() == [0.0, 0.0, 1.0]
    assert drift.psi(shares, shifted) > 5
    below = drift.bin_shares(np.full(10, -1.0), edges)
    assert below.tolist() == [1.0, 0.0, 0.0]


def test_quantile_bins_hold_about_equal_training_shares(train_x):
    edges = drift.bin_edges(train_x[:, 0], 10)
    shares = drift.bin_shares(train_x[:, 0], edges)
    assert shares.sum() == pytest.approx(1.0)
    assert shares[0] == 0.0 and shares[-1] == 0.0  # nothing below the minimum or above the maximum
    assert np.all(np.abs(shares[2:-1] - 0.1) < 0.01)


def test_an_unchanged_batch_does_not_drift(reference):
    x = _fresh(500, seed=2)
    report = drift.compare(x, reference, MonitorConfig(), _balanced(500), _balanced(500), _balanced(500))
    assert not report.drifted, report.reasons
    assert report.reasons == () and report.drifted_share == 0.0
    assert report.accuracy == 1.0 and report.agreement == 1.0
    assert report.verdict.startswith("no drift: 0 of 8 features drifted")
    assert report.ks_alpha_corrected == pytest.approx(0.01 / 8)


def test_shifted_features_are_named_and_only_they_drift(reference):
    x = _fresh(500, seed=3)
    x[:, 2] += 1.5
    x[:, 7] = np.clip(x[:, 7] + 6, 0, 16)
    report = drift.compare(x, reference, MonitorConfig(), _balanced(500))
    assert report.drifted
    assert {f.name for f in report.drifted_features} == {"f2", "f7"}
    assert report.drifted_share == pytest.approx(2 / 8)
    [reason] = report.reasons
    assert reason.startswith("feature drift: 2 of 8 features drifted") and "f2" in reason and "f7" in reason
    f2 = next(f for f in report.features if f.name == "f2")
    assert f2.psi > 0.2 and f2.ks_pvalue < 1e-10 and f2.batch_mean == pytest.approx(1.5, abs=0.2)


def test_a_share_threshold_tolerates_a_few_drifted_features(reference):
    x = _fresh(500, seed=3)
    x[:, 2] += 1.5
    report = drift.compare(x, reference, MonitorConfig(max_drifted_share=0.2), _balanced(500))
    assert [f.name for f in report.drifted_features] == ["f2"]
    assert not report.drifted


def test_a_feature_drifts_only_when_psi_and_ks_agree(reference):
    # 40,000 rows, mean +0.15 sd: KS (2,000 reference values) is significant, the PSI is small; not drift.
    x = _fresh(40000, seed=4)
    x[:, 0] += 0.15
    report = drift.compare(x, reference, MonitorConfig(), _balanced(40000))
    f0 = report.features[0]
    assert f0.ks_pvalue < report.ks_alpha_corrected and f0.psi < 0.2
    assert not f0.drifted and not report.drifted
    # Same with a tighter PSI threshold: now both agree.
    tight = drift.compare(x, reference, MonitorConfig(psi_threshold=0.001), _balanced(40000))
    assert tight.features[0].drifted


def test_values_beyond_the_fp16_range_are_counted_per_feature(reference):
    x = _fresh(500, seed=5)
    x[:3, 4] = 70000.0
    x[3, 5] = -1e6
    x[4, 5] = 65504.0  # the largest fp16 value itself fits
    report = drift.compare(x, reference, MonitorConfig(), _balanced(500))
    assert report.fp16_overflow == 4
    assert {f.name: f.fp16_overflow for f in report.features if f.fp16_overflow} == {"f4": 3, "f5": 1}
    assert any(r.startswith("fp16 range: 4 values beyond +-65504") and "f4 (3)" in r for r in report.reasons)
    assert report.metrics()["monitor.fp16_overflow.f4"] == 3
    tolerant = drift.compare(x, reference, MonitorConfig(max_fp16_overflow=10), _balanced(500))
    assert not any(r.startswith("fp16 range") for r in tolerant.reasons)


def test_accuracy_drop_on_labelled_batch_ignores_missing_labels(reference):
    x = _fresh(300, seed=6)
    pred = _balanced(300)
    y = pred.copy()
    y[:60] = (y[:60] + 1) % 3  # 80% right
    y[60:90] = -1  # missing: not counted
    report = drift.compare(x, reference, MonitorConfig(), pred, y=y)
    assert report.labelled_rows == 270 and report.accuracy == pytest.approx(210 / 270)
    assert any(r.startswith("accuracy drop: 0.7778 on 270 labelled rows vs 0.9500") for r in report.reasons)
    assert drift.compare(x, reference, MonitorConfig(max_accuracy_drop=0.2), pred, y=y).drifted is False


def test_precision_drift_is_a_drop_in_fp32_twin_agreement(reference):
    x = _fresh(300, seed=7)
    pred = _balanced(300)
    twin = pred.copy()
    twin[:30] = (twin[:30] + 1) % 3  # 90% agreement vs 99% at registration
    report = drift.compare(x, reference, MonitorConfig(), pred, twin_pred=twin)
    assert report.agreement == pytest.approx(0.9) and report.reference_agreement == pytest.approx(0.99)
    [reason] = report.reasons
    assert reason.startswith("precision drift: the bf16 champion agrees with its fp32 twin on 90.00%")
    assert report.metrics()["monitor.agreement_drop"] == pytest.approx(0.09)


def test_without_a_twin_precision_drift_is_not_checked(train_x):
    ref = drift.reference_stats(train_x, FEATURES, CLASSES, "fp16", _balanced(300), 0.9, None, MonitorConfig())
    assert ref.agreement_rate is None
    report = drift.compare(_fresh(300, seed=11), ref, MonitorConfig(), _balanced(300), twin_pred=None)
    assert report.agreement is None and not report.drifted
    assert "monitor.agreement" not in report.metrics()
    assert "fp32-twin agreement" not in report.verdict


def test_prediction_distribution_drift(reference):
    x = _fresh(300, seed=8)
    pred = np.zeros(300, dtype=np.int64)  # everything predicted as class 0
    report = drift.compare(x, reference, MonitorConfig(), pred)
    assert report.prediction_psi > 1 and report.prediction_shares[0] == 1.0
    assert [r.split(":")[0] for r in report.reasons] == ["prediction drift"]


def test_reference_round_trips_through_json(reference):
    back = drift.ReferenceStats.from_json(reference.to_json())
    assert back == reference
    assert len(back.features[0].sample) == 2000 and back.train_rows == 3000
    assert back.agreement_rate == pytest.approx(0.99)
    assert back.prediction_shares == pytest.approx((1 / 3, 1 / 3, 1 / 3))


def test_metrics_are_dotted_and_per_feature(reference):
    report = drift.compare(_fresh(200, seed=9), reference, MonitorConfig(), _balanced(200), _balanced(200))
    m = report.metrics()
    assert {"monitor.drifted_share", "monitor.prediction_psi", "monitor.psi.f3", "monitor.ks_pvalue.f3",
            "monitor.agreement_drop"} <= set(m)
    assert "monitor.accuracy" not in m  # no labels


def test_load_batch_refuses_malformed_data_with_exit_3(tmp_path):
    ok = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4], "label": [0, 1]})
    ok.to_csv(tmp_path / "ok.csv", index=False)
    batch = batches.load_batch(str(tmp_path / "ok.csv"), ("b", "a"), "label")
    assert batch.x.tolist() == [[3.0, 1.0], [4.0, 2.0]] and batch.labels.tolist() == [0, 1]

    cases = {
        "missing.csv": (ok.drop(columns="b"), "lacks 1 feature column(s) the model needs: b"),
        "text.csv": (ok.assign(a=["1.0", "oops"]), "non-numeric values in a (1 text cell(s) in a, values not shown)"),
        "nan.csv": (ok.assign(a=[1.0, None]), "1 missing or infinite feature values, in a"),
    }
    for name, (frame, message) in cases.items():
        frame.to_csv(tmp_path / name, index=False)
        with pytest.raises(DataValidationError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
            batches.load_batch(str(tmp_path / name), ("a", "b"), "label")
        assert err.value.exit_code == 3 and "\n" not in str(err.value)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataValidationError, match="cannot read"):
        batches.load_batch(str(tmp_path / "junk.parquet"), ("a", "b"), "label")


def test_label_indices_map_labels_and_mark_unknown_ones():
    labels = pd.Series([0, 2, 7, None, 1.0])
    assert batches.label_indices(labels, CLASSES).tolist() == [0, 2, -1, -1, 1]
    assert batches.label_indices(pd.Series(["cat", "dog", "eel"]), ("cat", "dog")).tolist() == [0, 1, -1]


def test_monitor_config_is_validated_at_load():
    cfg = load_config(overrides=["monitor.psi_threshold=0.3", "monitor.max_drifted_share=0.1"])
    assert cfg.monitor.psi_threshold == 0.3 and cfg.monitor.experiment == "mpops-monitoring"
    assert cfg.as_flat_dict()["monitor.ks_alpha"] == 0.01
    with pytest.raises(ConfigError, match="monitor.ks_alpha must be between 0 and 1"):
        load_config(overrides=["monitor.ks_alpha=2"])
    with pytest.raises(ConfigError, match="unknown key 'monitor.psi'"):
        load_config(overrides=["monitor.psi=1"])


def test_report_files_and_plots_for_drifted_and_top_features(reference, tmp_path):
    x = _fresh(400, seed=10)
    x[:, 2] += 2.0
    report = drift.compare(x, reference, MonitorConfig(), _balanced(400))
    batch = batches.Batch("batch.csv", x, None)
    folder = write_report(report, reference, batch, "models:/m@champion", tmp_path / "r", top_k=2)
    table = pd.read_csv(folder / "report.csv")
    assert table.iloc[0]["feature"] == "f2" and bool(table.iloc[0]["drifted"]) and len(table) == 8
    md = (folder / "report.md").read_text()
    assert "**Verdict: DRIFT**" in md and "| f2 |" in md
    plots = sorted(p.name for p in (folder / "plots").iterdir())
    assert "f2.png" in plots and len(plots) == 3  # the drifted one plus the top 2 others
    assert (folder / "plots" / "f2.png").read_bytes()[:4] == b"\x89PNG"


def test_retrain_uses_the_deployment_when_a_server_has_it(monkeypatch):
    """With PREFECT_API_URL set, --retrain starts the nightly deployment instead of a subflow."""
    import logging
    import types
    import uuid

    import prefect.deployments
    from prefect.exceptions import ObjectNotFound

    from flows import monitoring
    from pipeline.core.errors import GateFailed

    monkeypatch.setattr(monitoring, "get_run_logger", lambda: logging.getLogger("test"))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    calls = []
    run_id = uuid.uuid4()

    def fake_run_deployment(name, timeout, parameters=None):
        calls.append((name, timeout, parameters))
        return types.SimpleNamespace(name="brave-otter", id=run_id)

    monkeypatch.setattr(prefect.deployments, "run_deployment", fake_run_deployment)
    said = monitoring._retrain(None, None)
    assert calls == [("mpops-training/nightly-retrain", 0, None)]
    assert said == f"started deployment mpops-training/nightly-retrain: flow run brave-otter ({run_id})"
    said = monitoring._retrain(None, None, "out/retrain-data", "1 labelled kept batch(es) added")
    assert calls[-1] == ("mpops-training/nightly-retrain", 0, {"data": "out/retrain-data"})
    assert said.endswith("; 1 labelled kept batch(es) added")

    def missing(name, timeout, parameters=None):
        raise ObjectNotFound(None)

    subflow = []

    def fake_training_flow(config, overrides, data=None):
        subflow.append((config, overrides))
        raise GateFailed("no candidate passed the gates: fp32: accuracy floor; nothing registered")

    monkeypatch.setattr(prefect.deployments, "run_deployment", missing)
    monkeypatch.setattr(monitoring, "training_flow", fake_training_flow)
    assert monitoring._retrain("c.yaml", {"train.epochs": 1}) == \
        "retraining failed: no candidate passed the gates: fp32: accuracy floor; nothing registered"
    assert subflow == [("c.yaml", {"train.epochs": 1})]


def _confident(n: int, top: float) -> np.ndarray:
    probs = np.full((n, 3), (1 - top) / 2)
    probs[np.arange(n), np.arange(n) % 3] = top
    return probs


def test_an_estimated_accuracy_drop_without_labels_is_drift_only_when_the_estimate_holds(reference):
    from dataclasses import replace

    from pipeline.core.performance import Calibrator

    good = replace(reference, calibration=Calibrator(1.0, 600, 0.03, 0.02, 0.95, 0.95))
    x = _fresh(500, seed=21)
    sure = drift.compare(x, good, MonitorConfig(), _balanced(500), probs=_confident(500, 0.95))
    assert not sure.drifted and sure.estimate.expected == pytest.approx(0.95) and sure.estimate.trusted
    assert sure.metrics()["monitor.estimated_accuracy"] == pytest.approx(0.95)
    unsure = drift.compare(x, good, MonitorConfig(), _balanced(500), probs=_confident(500, 0.7))
    [reason] = unsure.reasons
    assert reason.startswith("estimated accuracy drop: 0.7000 expected without labels") and unsure.estimate.high < 0.95
    broken = replace(good, calibration=Calibrator(1.0, 600, 0.2, 0.12, 0.95, 0.95))
    untrusted = drift.compare(x, broken, MonitorConfig(), _balanced(500), probs=_confident(500, 0.7))
    assert not untrusted.drifted and not untrusted.estimate.trusted
    assert "calibration error on the held-out reference 0.120" in untrusted.estimate.why_untrusted
    moved = x.copy()
    moved[:, 2] += 3
    shifted = drift.compare(moved, good, MonitorConfig(), _balanced(500), probs=_confident(500, 0.7))
    assert [r.split(":")[0] for r in shifted.reasons] == ["feature drift"]
    assert "1 feature(s) drifted" in shifted.estimate.why_untrusted


def test_psi_cutoffs_are_reported_per_feature_and_shrink_with_the_batch(reference):
    small = drift.compare(_fresh(60, seed=5), reference, MonitorConfig(psi_threshold=0.0), _balanced(60))
    large = drift.compare(_fresh(3000, seed=5), reference, MonitorConfig(psi_threshold=0.0), _balanced(3000))
    assert all(s.psi_cutoff > 4 * big.psi_cutoff for s, big in zip(small.features, large.features))
    assert not small.drifted and not large.drifted and small.false_alarm_rate == 0.01


def test_one_hot_column_names_become_valid_metric_names():
    from mlflow.utils.validation import _validate_metric_name

    from pipeline.core.drift import metric_safe

    for name in ("scanner=desk a", "pixel 3", "größe=x/y"):
        _validate_metric_name(f"monitor.psi.{metric_safe(name)}")  # raises on a name MLflow refuses
    assert metric_safe("scanner=desk a") == "scanner_desk a"
