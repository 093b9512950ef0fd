"""The detectable effect: exact values of the paired design, and the gate's warning when the test set is too small."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import binom, binomtest, norm

from pipeline.core.config import GateConfig
from pipeline.core.gate import gate
from pipeline.core.gate_checks import Check
from pipeline.core.metrics import bootstrap_delta_ci, bootstrap_delta_ci_counts
from pipeline.core.power import (LossRule, McNemarRule, background_discordance, detectable_drop,
                                 detection_probability, mean_shift_detectable, rows_needed)
from pipeline.render.markdown import gate_markdown
from tests.unit.test_gate import baseline_pred, cand, labels

MCNEMAR = McNemarRule(0.05)


def test_mcnemar_needs_six_lost_rows_of_six_and_matches_scipy_on_every_count():
    """Six of six discordant rows lost: p = 2 / 2**6 = 0.031 < 0.05; five of five: 0.0625, never significant."""
    needed = MCNEMAR.lost_needed(np.arange(301), rows=0)
    assert needed[:7].tolist() == [1, 2, 3, 4, 5, 6, 6]  # m + 1: no count fails the check
    assert (needed[10], needed[20], needed[100]) == (9, 15, 61)
    for m in range(301):
        brute = next((k for k in range(m + 1) if k > m - k and binomtest(k, m, 0.5).pvalue < 0.05), m + 1)
        assert needed[m] == brute, m


def test_without_background_flips_detection_is_the_chance_of_six_lost_rows():
    """No row flips by chance: McNemar fails the candidate exactly when it loses six or more rows."""
    for drop in (0.005, 0.02, 0.04):
        assert detection_probability(360, 0.0, drop, MCNEMAR) == pytest.approx(binom.sf(5, 360, drop), abs=1e-9)
    exact = brentq(lambda d: binom.sf(5, 360, d) - 0.8, 1e-4, 0.5)
    assert detectable_drop(360, 0.0, MCNEMAR, 0.8) == pytest.approx(exact, abs=2e-5)
    assert round(exact * 100, 1) == 2.2


def test_detectable_drop_shrinks_with_rows_and_grows_with_discordance():
    by_rows = [detectable_drop(n, 0.01, MCNEMAR, 0.8) for n in (200, 360, 1000, 5000)]
    assert by_rows == sorted(by_rows, reverse=True) and by_rows[-1] < 0.006 < 0.04 < by_rows[0]
    by_noise = [detectable_drop(360, bg, MCNEMAR, 0.8) for bg in (0.0, 0.02, 0.1)]
    assert by_noise == sorted(by_noise)
    assert detectable_drop(5, 0.0, MCNEMAR, 0.8) == math.inf  # 5 rows can never reach p < 0.05
    assert detectable_drop(360, 0.0, McNemarRule(0.0), 0.8) == math.inf  # the test switched off


def test_rows_needed_is_the_first_size_whose_detection_reaches_the_power():
    n = rows_needed(0.0, 0.03, MCNEMAR, 0.8)
    brute = next(k for k in range(6, 2000) if binom.sf(5, k, 0.03) >= 0.8)
    assert n == brute
    n = rows_needed(0.02, 0.03, MCNEMAR, 0.8)
    assert detection_probability(n, 0.02, 0.03, MCNEMAR) >= 0.8 > detection_probability(n - 1, 0.02, 0.03, MCNEMAR)
    assert rows_needed(0.0, 0.0, MCNEMAR, 0.8) is None


def test_point_estimate_rule_counts_net_lost_rows_as_the_gate_compares_them():
    """On 36 rows a 0.1 recall tolerance is 3.6 rows: four more lost than gained fail it; on 30 rows exactly
    three (0.1, not above it) pass, as the gate's `value <= threshold` does."""
    rule = LossRule(0.1)
    assert rule.lost_needed(np.array([0, 3, 4, 5, 6]), rows=36).tolist() == [1, 4, 4, 5, 5]
    assert rule.lost_needed(np.array([3, 4]), rows=30).tolist() == [4, 4]
    for drop in (0.05, 0.15):  # with no background, the check fails once four rows are lost
        assert detection_probability(36, 0.0, drop, rule) == pytest.approx(binom.sf(3, 36, drop), abs=1e-9)


def test_background_counts_every_flip():
    assert background_discordance(5, 2, 100) == pytest.approx(0.07)
    assert background_discordance(0, 0, 0) == 0.0


def test_a_mean_over_rows_is_detected_at_the_tolerance_plus_z_standard_errors():
    diffs = np.array([0.0, 0.1, -0.1, 0.2] * 25)
    se = diffs.std(ddof=1) / 10
    assert mean_shift_detectable(diffs, 0.03, 0.8) == pytest.approx(0.03 + norm.ppf(0.8) * se)
    assert math.isnan(mean_shift_detectable(np.array([np.nan, 1.0]), 0.03, 0.8))


def test_the_counts_bootstrap_gives_the_bound_the_issue_measured():
    """Six rows lost of 360 (a 1.7-point drop): the interval's lower bound is -11/360 = -0.0306, and the
    row form of the same bootstrap reads the same counts."""
    lo, _ = bootstrap_delta_ci_counts(6, 0, 360)
    assert lo == pytest.approx(-11 / 360)
    y = np.zeros(360, int)
    worse = y.copy()
    worse[:6] = 1
    assert bootstrap_delta_ci(y, y, worse) == bootstrap_delta_ci_counts(6, 0, 360)


def _pair(n_per_class: int, **cfg):
    y = labels(n_per_class)
    base = baseline_pred(y)
    return gate([cand("fp32", y, base), cand("bf16", y, base.copy(), sps=300)], y,
                GateConfig(min_accuracy=0.5, **cfg), classes=tuple("0123456789"))


def test_default_test_size_without_flips_states_its_power_and_does_not_warn():
    v = _pair(36).verdict("bf16")
    assert v.power.sentence == "with 360 test rows this gate detects an accuracy drop of >= 2.2 points 80% of the time"
    assert v.warnings == () and v.check(Check.ACCURACY_POWER).passed
    assert v.power.figure(Check.CLASS_RECALL_DROP).rows == 36


def test_small_test_set_warns_and_require_power_fails_naming_the_test_size():
    report = _pair(9)
    v = report.verdict("bf16")
    assert report.selected == "bf16" and len(v.warnings) == 1
    assert "with 90 test rows this gate detects an accuracy drop of >= 8.6 points" in v.warnings[0]
    needed = rows_needed(0.0, 0.03, MCNEMAR, 0.8)
    assert f"a test set of >= {needed} rows would detect a 3-point drop" in v.warnings[0]
    strict = _pair(9, require_power=True)
    assert strict.selected == "fp32" and not strict.verdict("bf16").passed
    assert strict.verdict("bf16").reason.count("\n") == 0 and f">= {needed} rows" in strict.verdict("bf16").reason


def test_power_is_in_the_json_and_markdown_reports():
    report = _pair(9, power=0.9)
    body = json.loads(report.to_json())
    bf16 = next(v for v in body["verdicts"] if v["precision"] == "bf16")
    assert bf16["power_summary"].endswith("90% of the time") and bf16["warnings"]
    checks = {c["key"]: c for c in bf16["checks"]}
    assert checks["mcnemar"]["detectable"] == pytest.approx(checks["accuracy_power"]["value"])
    assert checks["ece_increase"]["detectable"] is None
    assert {f["key"] for f in bf16["power"]["figures"]} == {"mcnemar", "macro_recall_loss", "class_recall_drop",
                                                            "brier_increase"}
    md = gate_markdown(report)
    assert "**Too small to trust**" in md and "detects (90% of the time)" in md and "pass; **warning**" in md


def test_the_relative_tolerance_tightens_what_the_figure_is_held_against():
    v = _pair(36, relative_tolerance=0.02).verdict("bf16")  # 2% of fp32's 0.96: a 1.9-point drop
    assert v.power.accuracy.tolerance == pytest.approx(0.02 * v.accuracy)
    assert v.warnings  # 2.2 points cannot be seen against 1.9
