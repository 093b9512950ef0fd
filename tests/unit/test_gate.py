"""Every gate on constructed predictions: an equal candidate, one that flips a class, a miscalibrated
one, a tiny test set, and metrics that could not be computed."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from pipeline.core.config import GateConfig
from pipeline.core.evaluate import Latency, scores
from pipeline.core.gate import CandidateMetrics, gate
from pipeline.core.gate_checks import SPECS, Check
from pipeline.render.markdown import gate_markdown
from pipeline.core.metrics import bootstrap_delta_ci, brier_score, expected_calibration_error, flip_matrix, mcnemar_exact

N_CLASSES = 10
LAT = Latency(1.0, 1.2, 10.0, 11.0, 25600.0)


def labels(n_per_class: int = 40) -> np.ndarray:
    return np.repeat(np.arange(N_CLASSES), n_per_class)


def probs_for(pred: np.ndarray, confidence: float = 0.9) -> np.ndarray:
    p = np.full((len(pred), N_CLASSES), (1 - confidence) / (N_CLASSES - 1))
    p[np.arange(len(pred)), pred] = confidence
    return p


def cand(name: str, y: np.ndarray, pred: np.ndarray, sps: float = 100.0, mem: int = 100, confidence: float = 0.9,
         fgsm: float = 0.8, latency: Latency = LAT, **kw) -> CandidateMetrics:
    ev = scores(name, y, probs_for(pred, confidence), N_CLASSES, fgsm, latency)
    return CandidateMetrics(name, ev, sps, mem, 0, **kw)


def baseline_pred(y: np.ndarray, wrong_every: int = 25) -> np.ndarray:
    pred = y.copy()
    pred[::wrong_every] = (pred[::wrong_every] + 1) % N_CLASSES  # ~96% accurate, errors spread over classes
    return pred


def check(report, precision, key: Check):
    return report.verdict(precision).check(key)


def test_equal_candidate_passes_and_the_faster_one_is_selected():
    y = labels()
    base = baseline_pred(y)
    r = gate([cand("fp32", y, base), cand("bf16", y, base.copy(), sps=250, mem=60)], y, GateConfig())
    v = r.verdict("bf16")
    assert r.selected == "bf16", v.reason
    assert v.comparison.agreement == 1.0 and v.comparison.accuracy_ci == (0.0, 0.0)
    assert round(v.speedup, 2) == 2.5 and round(v.memory_ratio, 2) == 0.6
    assert sum(map(sum, v.comparison.flips)) == len(y)  # every row on the diagonal


def test_candidate_that_flips_one_class_fails_per_class_recall_and_names_it():
    y = labels()
    base = baseline_pred(y)
    bad = base.copy()
    seven = np.flatnonzero(y == 7)
    bad[seven[:10]] = 1  # a quarter of the 7s now read as 1: overall accuracy moves only 2.5 points
    r = gate([cand("fp32", y, base), cand("bf16", y, bad, sps=300)], y,
             GateConfig(accuracy_tolerance=0.05, macro_f1_tolerance=0.05, precision_tolerance=0.05,
                        recall_tolerance=0.05, relative_tolerance=0.1, min_agreement=0.9, mcnemar_alpha=0.0))
    v = r.verdict("bf16")
    per_class = check(r, "bf16", Check.CLASS_RECALL_DROP)
    assert not per_class.passed and "class 7" in per_class.note
    assert r.selected == "fp32"
    assert v.comparison.flips[7][1] >= 9  # the flip matrix shows where the rows went


def test_significant_regression_fails_mcnemar_and_the_interval():
    y = labels()
    base = baseline_pred(y)
    worse = base.copy()
    worse[1::10] = (y[1::10] + 3) % N_CLASSES  # 40 more wrong rows, spread over every class
    r = gate([cand("fp32", y, base), cand("bf16", y, worse, sps=300)], y, GateConfig(max_class_recall_drop=1.0))
    v = r.verdict("bf16")
    assert v.comparison.mcnemar_p < 1e-6
    assert not check(r, "bf16", Check.MCNEMAR).passed
    assert not check(r, "bf16", Check.ACCURACY_LOSS).passed
    assert v.comparison.accuracy_ci[1] < 0


def test_tiny_test_set_cannot_pass_a_regression_by_luck():
    """On 20 rows, 1 extra error is within a 0.1 point tolerance by the point estimate (-0.05)
    but the interval's lower bound is not."""
    y = np.arange(20) % N_CLASSES
    base = y.copy()
    worse = y.copy()
    worse[3] = 4
    cfg = GateConfig(accuracy_tolerance=0.06, relative_tolerance=1.0, macro_f1_tolerance=1.0,
                     precision_tolerance=1.0, recall_tolerance=1.0, max_class_recall_drop=1.0, min_agreement=0.0,
                     min_accuracy=0.0)
    r = gate([cand("fp32", y, base), cand("bf16", y, worse, sps=300)], y, cfg)
    v = r.verdict("bf16")
    assert v.accuracy_delta == pytest.approx(-0.05)
    assert v.comparison.accuracy_ci[0] <= -0.1 + 1e-9
    assert not check(r, "bf16", Check.ACCURACY_LOSS).passed


def test_tiny_test_set_does_not_fail_a_harmless_candidate():
    y = np.arange(20) % N_CLASSES
    base = y.copy()
    base[0] = 5  # both models make the same single mistake
    r = gate([cand("fp32", y, base, confidence=0.9), cand("bf16", y, base.copy(), sps=300, confidence=0.89)], y,
             GateConfig(min_accuracy=0.5))
    assert r.selected == "bf16", r.verdict("bf16").reason


def test_miscalibrated_candidate_fails_the_calibration_gate():
    y = labels()
    base = baseline_pred(y)
    r = gate([cand("fp32", y, base, confidence=0.95), cand("bf16", y, base.copy(), sps=300, confidence=0.5)], y,
             GateConfig())
    v = r.verdict("bf16")
    assert not check(r, "bf16", Check.ECE_INCREASE).passed
    assert not check(r, "bf16", Check.BRIER_INCREASE).passed
    assert r.selected == "fp32" and "ECE increase" in v.reason


def test_fgsm_robustness_drop_is_gated():
    y = labels()
    base = baseline_pred(y)
    r = gate([cand("fp32", y, base, fgsm=0.8), cand("bf16", y, base.copy(), sps=300, fgsm=0.6)], y, GateConfig())
    assert not check(r, "bf16", Check.FGSM_DROP).passed
    assert check(r, "bf16", Check.FGSM_DROP).value == pytest.approx(0.2)


def test_a_metric_that_could_not_be_computed_fails_the_gate():
    y = labels()
    base = baseline_pred(y)
    r = gate([cand("fp32", y, base), cand("bf16", y, base.copy(), sps=300, fgsm=float("nan"), latency=None)], y,
             GateConfig())
    fgsm, latency = check(r, "bf16", Check.FGSM_DROP), check(r, "bf16", Check.LATENCY_RATIO)
    assert not fgsm.passed and "could not be computed" in fgsm.note
    assert not latency.passed
    assert r.selected == "fp32"


def test_slow_candidate_fails_the_speed_gate_and_health_failures_are_named():
    y = labels()
    base = baseline_pred(y)
    r = gate([cand("fp32", y, base, sps=1000), cand("fp16", y, base.copy(), sps=20),
              cand("bf16", y, base.copy(), sps=2000, skipped_share=0.2),
              cand("bf16-true", y, base.copy(), sps=2000, stop_reason="non-finite loss in 3 of 9 steps")],
             y, GateConfig())
    assert r.selected == "fp32"
    assert "speedup vs fp32 0.02" in r.verdict("fp16").reason
    assert "skipped-step share" in r.verdict("bf16").reason
    assert "stopped early: non-finite loss" in r.verdict("bf16-true").reason


def test_relative_tolerance_and_two_sided_change_thresholds():
    y = labels()
    base = baseline_pred(y)
    better = y.copy()  # 100% accurate: 4 points better than fp32
    loose = GateConfig(min_agreement=0.9)
    pair = [cand("fp32", y, base), cand("bf16", y, better, sps=300, confidence=0.99)]
    assert gate(pair, y, loose).selected == "bf16", gate(pair, y, loose).verdict("bf16").reason
    worse = base.copy()
    worse[1::40] = (y[1::40] + 3) % N_CLASSES  # 10 more errors: -0.025
    lenient_abs = dataclasses.replace(loose, accuracy_tolerance=0.5, macro_f1_tolerance=0.5, precision_tolerance=0.5,
                                      recall_tolerance=0.5, relative_tolerance=0.01, max_class_recall_drop=1.0,
                                      mcnemar_alpha=0.0)
    rel = gate([pair[0], cand("bf16", y, worse, sps=300)], y, lenient_abs)
    assert check(rel, "bf16", Check.ACCURACY_LOSS).passed
    assert not check(rel, "bf16", Check.ACCURACY_RELATIVE_LOSS).passed
    r = gate(pair, y, dataclasses.replace(loose, two_sided=True))
    assert not check(r, "bf16", Check.ACCURACY_GAIN).passed


def test_selection_policies():
    y = labels()
    base = baseline_pred(y)
    better = baseline_pred(y, wrong_every=50)
    cands = [cand("fp32", y, base), cand("bf16", y, base.copy(), sps=300), cand("fp16", y, better, sps=150)]
    cfg = GateConfig(min_agreement=0.9)
    assert gate(cands, y, cfg).selected == "bf16"
    assert gate(cands, y, dataclasses.replace(cfg, selection="most-accurate")).selected == "fp16"
    assert gate(cands, y, dataclasses.replace(cfg, selection="fp16")).selected == "fp16"
    slow = [cands[0], cand("bf16", y, base.copy(), sps=10)]
    fixed = gate(slow, y, dataclasses.replace(cfg, selection="bf16"))
    assert fixed.selected is None and "fixed selection bf16 did not pass" in fixed.reason


def test_nothing_passes_the_floor():
    y = labels()
    bad = (y + 1) % N_CLASSES
    r = gate([cand("fp32", y, bad), cand("bf16", y, bad.copy(), sps=300)], y, GateConfig(min_accuracy=0.9))
    assert r.selected is None and "accuracy floor" in r.verdict("fp32").reason


def test_report_json_and_markdown_carry_every_check():
    y = labels()
    base = baseline_pred(y)
    r = gate([cand("fp32", y, base), cand("bf16", y, base.copy(), sps=300)], y, GateConfig(), classes=tuple("0123456789"))
    body = json.loads(r.to_json())
    bf16 = next(v for v in body["verdicts"] if v["precision"] == "bf16")
    assert bf16["passed"] is True and len(bf16["checks"]) == len(r.verdict("bf16").checks)
    assert {c["group"] for c in bf16["checks"]} == {"quality", "significance", "agreement", "per-class",
                                                     "calibration", "robustness", "cost", "health"}
    # every check carries its stable key; labels are for people and may change
    assert {c["key"] for c in bf16["checks"]} == {c.value for c in Check} - {c.value for c in Check if
                                                                              c.name.endswith("_GAIN")}
    assert all(c["name"] == SPECS[Check(c["key"])].label for c in bf16["checks"])
    md = gate_markdown(r)
    assert "**Selected: bf16**" in md and "| agreement | agreement with fp32 | 1 | >= 0.95 |  | pass |" in md


def test_metric_helpers_on_known_values():
    y = np.array([0, 0, 1, 1])
    assert mcnemar_exact(y, np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1])).p_value == 1.0
    t = mcnemar_exact(np.zeros(10, int), np.zeros(10, int), np.ones(10, int))
    assert (t.base_only, t.cand_only) == (10, 0) and t.p_value == pytest.approx(2 * 0.5**10)
    lo, hi = bootstrap_delta_ci(np.zeros(10, int), np.zeros(10, int), np.ones(10, int))
    assert lo == hi == -1.0
    assert flip_matrix(np.array([0, 1, 1]), np.array([0, 0, 1]), 2).tolist() == [[1, 0], [1, 1]]
    onehot = np.eye(2)[y]
    assert expected_calibration_error(y, onehot) == 0.0 and brier_score(y, onehot) == 0.0
    assert expected_calibration_error(y, np.full((4, 2), 0.5)) == pytest.approx(0.0)
    assert brier_score(y, np.full((4, 2), 0.5)) == pytest.approx(0.5)


def test_non_finite_outputs_are_named_as_the_cause():
    """fp16 overflows to inf past 65504; the gate must say so, not only that ECE could not be computed."""
    y = labels()
    base = baseline_pred(y)
    p = probs_for(base.copy())
    p[:3] = np.nan
    ev = scores("fp16", y, p, N_CLASSES, 0.8, LAT)
    assert ev.nonfinite_outputs == 3
    r = gate([cand("fp32", y, base), CandidateMetrics("fp16", ev, 300.0, 100, 0)], y, GateConfig())
    assert "test rows with non-finite outputs 3" in r.verdict("fp16").reason
    assert r.selected == "fp32"


def test_the_noise_floor_reads_checks_by_key_so_a_new_label_breaks_nothing(monkeypatch):
    """Labels are for people: renaming one changes the report's wording, not which figure is which."""
    from pipeline.core import gate_checks
    from pipeline.core.sweep import noise_rows

    y = labels()
    base = scores("fp32", y, probs_for(baseline_pred(y)), N_CLASSES, 0.8)
    other = scores("fp32", y, probs_for(baseline_pred(y, wrong_every=20)), N_CLASSES, 0.8)
    spec = gate_checks.SPECS[Check.ACCURACY_LOSS]
    monkeypatch.setitem(gate_checks.SPECS, Check.ACCURACY_LOSS, dataclasses.replace(spec, label="accuracy loss, renamed"))
    rows = {r.key: r for r in noise_rows(base, [other], y, GateConfig(), tuple("0123456789"))}
    assert rows[Check.ACCURACY_LOSS].name == "accuracy loss, renamed"
    assert rows[Check.ACCURACY_LOSS].config_key == "gate.accuracy_tolerance"
    assert rows[Check.ACCURACY_LOSS].worst > 0 and rows[Check.AGREEMENT].worst < 1.0
