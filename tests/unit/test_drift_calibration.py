"""The monitor's false-alarm rate per batch size, its detection of planted shifts, and the accuracy estimate
without labels, on the bundled digits (bench/drift_calibration.py prints the same figures)."""
from __future__ import annotations

import numpy as np
import pytest

from bench.drift_calibration import measure
from pipeline.core import performance, shifts
from pipeline.core.drift_cutoff import familywise_cutoffs, psi_cutoffs

RATE = 0.01


@pytest.fixture(scope="module")
def unshifted():
    return measure(batches=200, sizes=(50, 200, 1000), rate=RATE, kinds=("none",))["none"]


@pytest.fixture(scope="module")
def shifted():
    return measure(batches=40, sizes=(50, 200, 1000), rate=RATE, kinds=("pixel-shift", "noise", "class-mix"))


def test_false_alarms_on_unshifted_batches_stay_within_the_configured_rate(unshifted):
    for rows, r in unshifted.items():
        assert r["alarm_rate"] <= RATE, (rows, r)


def test_planted_shifts_are_detected(shifted):
    for kind in ("pixel-shift", "noise"):
        assert all(r["alarm_rate"] >= 0.95 for r in shifted[kind].values()), shifted[kind]
    # Class mix moves only the label shares: a 50-row batch is too small to be sure, 200 rows are not.
    assert shifted["class-mix"][200]["alarm_rate"] >= 0.9 and shifted["class-mix"][1000]["alarm_rate"] >= 0.95


def test_estimated_accuracy_is_within_two_points_where_the_label_relation_holds(unshifted, shifted):
    """Mean |estimate - realised| at 200+ rows; a pixel shift breaks the estimate, and the report says so."""
    for r in (unshifted[200], unshifted[1000], *(shifted[k][n] for k in ("noise", "class-mix") for n in (200, 1000))):
        assert r["mean_abs_error"] <= 0.02, r
    assert shifted["pixel-shift"][200]["mean_abs_error"] > 0.2


def test_cutoffs_shrink_with_batch_size_and_are_cached():
    shares = [(0.1,) * 10, (0.5, 0.3, 0.2)]
    small, large = psi_cutoffs(shares, 1400, 50, RATE), psi_cutoffs(shares, 1400, 1000, RATE)
    assert np.all(small > 3 * large) and np.all(large > 0)
    assert psi_cutoffs(shares, 1400, 50, RATE) is not small and np.array_equal(psi_cutoffs(shares, 1400, 50, RATE), small)


def test_familywise_cutoffs_hold_the_rate_on_their_own_null():
    stats = np.random.default_rng(1).gamma(2.0, size=(5000, 20))
    cut = familywise_cutoffs(stats, 0.05)
    assert np.mean((stats > cut).any(axis=1)) <= 0.05
    fresh = np.random.default_rng(2).gamma(2.0, size=(20000, 20))
    assert np.mean((fresh > cut).any(axis=1)) == pytest.approx(0.05, abs=0.01)


def test_temperature_scaling_repairs_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 5)) * 3
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=p) for p in true])
    sharp = performance.calibrate(true, 0.4)  # overconfident by the inverse of that temperature
    cal = performance.fit_calibrator(sharp, y)
    assert cal.temperature == pytest.approx(2.5, rel=0.1)
    assert cal.ece_before > 0.05 and cal.ece_after < 0.03
    est = performance.estimate_accuracy(sharp, cal, cal.accuracy, 0.05, 0.99, y)
    assert est.trusted and est.low <= est.realised <= est.high and abs(est.error) < 0.02


def test_an_estimate_from_a_broken_calibration_is_not_trusted():
    cal = performance.Calibrator(1.0, 360, 0.2, 0.12, 0.9, 0.95)
    est = performance.estimate_accuracy(np.full((10, 2), 0.5), cal, 0.9, 0.05, 0.99)
    assert not est.trusted and "calibration error on the held-out reference 0.120" in est.why_untrusted


def test_pixel_shift_moves_images_right():
    x = np.arange(64, dtype=float).reshape(1, 64)
    out = shifts.pixel_shift(x).reshape(8, 8)
    assert np.all(out[:, 0] == 0) and out[0, 1] == 0 and out[2, 3] == 18
