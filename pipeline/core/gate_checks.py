"""The gate's checks: a stable key for each, and the checks computed from two models' test predictions.

`Check` is the identity config, reports, the sweep and the noise floor share; `SPECS` gives each its
label (for people only), group, direction and the GateConfig field holding its threshold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from pipeline.core.config import GateConfig
from pipeline.core.evaluate import EvalResult
from pipeline.core.metrics import bootstrap_delta_ci, flip_matrix, mcnemar_exact


class Check(StrEnum):
    ACCURACY_FLOOR = "accuracy_floor"
    ACCURACY_LOSS = "accuracy_loss"  # the lower bound of the paired bootstrap interval of the delta
    ACCURACY_RELATIVE_LOSS = "accuracy_relative_loss"
    ACCURACY_GAIN = "accuracy_gain"  # two-sided only
    MACRO_F1_LOSS = "macro_f1_loss"
    MACRO_F1_RELATIVE_LOSS = "macro_f1_relative_loss"
    MACRO_F1_GAIN = "macro_f1_gain"
    MACRO_PRECISION_LOSS = "macro_precision_loss"
    MACRO_PRECISION_RELATIVE_LOSS = "macro_precision_relative_loss"
    MACRO_PRECISION_GAIN = "macro_precision_gain"
    MACRO_RECALL_LOSS = "macro_recall_loss"
    MACRO_RECALL_RELATIVE_LOSS = "macro_recall_relative_loss"
    MACRO_RECALL_GAIN = "macro_recall_gain"
    MCNEMAR = "mcnemar"
    ACCURACY_POWER = "accuracy_power"  # the smallest drop McNemar detects at gate.power (pipeline.core.power)
    CLASS_RECALL_DROP = "class_recall_drop"
    AGREEMENT = "agreement"
    PROB_DIFF = "prob_diff"
    ECE_INCREASE = "ece_increase"
    BRIER_INCREASE = "brier_increase"
    FGSM_DROP = "fgsm_drop"
    SPEEDUP = "speedup"
    MEMORY_RATIO = "memory_ratio"
    LATENCY_RATIO = "latency_ratio"
    NONFINITE_LOSSES = "nonfinite_losses"
    NONFINITE_OUTPUTS = "nonfinite_outputs"
    SKIPPED_SHARE = "skipped_share"
    TRAINED_TO_END = "trained_to_end"


@dataclass(frozen=True)
class CheckSpec:
    label: str
    group: str
    op: str  # ">=" or "<=": how the value must compare with the threshold to pass
    setting: str | None  # the GateConfig field with the threshold; None: `fixed`
    fixed: float = 0.0


def _quality(metric: str, setting: str) -> list[CheckSpec]:
    return [CheckSpec(f"{metric} loss vs reference", "quality", "<=", setting),
            CheckSpec(f"{metric} relative loss vs reference", "quality", "<=", "relative_tolerance"),
            CheckSpec(f"{metric} gain vs reference (two-sided)", "quality", "<=", setting)]


SPECS: dict[Check, CheckSpec] = dict(zip(Check, [
    CheckSpec("accuracy floor", "quality", ">=", "min_accuracy"),
    *_quality("accuracy (CI lower bound)", "accuracy_tolerance"),
    *_quality("macro-F1", "macro_f1_tolerance"),
    *_quality("macro precision", "precision_tolerance"),
    *_quality("macro recall", "recall_tolerance"),
    CheckSpec("McNemar exact p (worse only)", "significance", ">=", "mcnemar_alpha"),
    CheckSpec("detectable accuracy drop", "significance", "<=", "accuracy_tolerance"),
    CheckSpec("largest per-class recall drop", "per-class", "<=", "max_class_recall_drop"),
    CheckSpec("agreement with fp32", "agreement", ">=", "min_agreement"),
    CheckSpec("largest probability difference", "agreement", "<=", "max_prob_diff"),
    CheckSpec("ECE increase", "calibration", "<=", "max_ece_increase"),
    CheckSpec("Brier increase", "calibration", "<=", "max_brier_increase"),
    CheckSpec("FGSM accuracy drop", "robustness", "<=", "max_fgsm_drop"),
    CheckSpec("speedup vs fp32", "cost", ">=", "min_speedup"),
    CheckSpec("peak memory ratio", "cost", "<=", "max_memory_ratio"),
    CheckSpec("p50 latency ratio at batch 256", "cost", "<=", "max_latency_ratio"),
    CheckSpec("non-finite losses", "health", "<=", None),
    CheckSpec("test rows with non-finite outputs", "health", "<=", None),
    CheckSpec("skipped-step share", "health", "<=", "max_skipped_share"),
    CheckSpec("trained to the end", "health", ">=", None, fixed=1.0),
], strict=True))


def threshold(key: Check, cfg: GateConfig) -> float:
    spec = SPECS[key]
    return float(getattr(cfg, spec.setting)) if spec.setting else spec.fixed


@dataclass(frozen=True)
class GateCheck:
    key: Check
    value: float
    threshold: float
    passed: bool
    note: str = ""

    @property
    def name(self) -> str:
        return SPECS[self.key].label

    @property
    def group(self) -> str:
        return SPECS[self.key].group

    @property
    def op(self) -> str:
        return SPECS[self.key].op

    def describe(self) -> str:
        if self.note:
            return f"{self.name}: {self.note}"
        return f"{self.name} {self.value:.4g} (needs {self.op} {self.threshold:.4g})"


def make_check(key: Check, value: float, cfg: GateConfig, passed: bool | None = None, note: str = "") -> GateCheck:
    """The value against its configured threshold; a value that could not be computed fails."""
    value, limit = float(value), threshold(key, cfg)
    if not math.isfinite(value):
        return GateCheck(key, value, limit, False, note="could not be computed, so it fails")
    if passed is None:
        passed = value >= limit if SPECS[key].op == ">=" else value <= limit
    return GateCheck(key, value, limit, passed, note)


@dataclass(frozen=True)
class Comparison:
    """Paired figures of a candidate against its reference on the same test rows."""

    accuracy_delta: float
    accuracy_ci: tuple[float, float]
    mcnemar_p: float
    reference_only_correct: int
    candidate_only_correct: int
    agreement: float
    flips: tuple[tuple[int, ...], ...]  # row: reference's predicted class; column: candidate's
    max_prob_diff: float
    recall_deltas: tuple[float, ...]  # per class, candidate minus reference


def compare(ref: EvalResult, cand: EvalResult, y: np.ndarray, cfg: GateConfig) -> Comparison:
    n_classes = len(cand.per_class_recall)
    ci = bootstrap_delta_ci(y, ref.predictions, cand.predictions, cfg.bootstrap_samples, cfg.ci_level)
    paired = mcnemar_exact(y, ref.predictions, cand.predictions)
    probs_ok = ref.probabilities is not None and cand.probabilities is not None and len(y)
    return Comparison(
        accuracy_delta=cand.accuracy - ref.accuracy, accuracy_ci=ci, mcnemar_p=paired.p_value,
        reference_only_correct=paired.base_only, candidate_only_correct=paired.cand_only,
        agreement=float(np.mean(ref.predictions == cand.predictions)) if len(y) else float("nan"),
        flips=tuple(tuple(int(v) for v in row) for row in flip_matrix(ref.predictions, cand.predictions, n_classes)),
        max_prob_diff=float(np.abs(cand.probabilities - ref.probabilities).max()) if probs_ok else float("nan"),
        recall_deltas=tuple(c - r for c, r in zip(cand.per_class_recall, ref.per_class_recall)),
    )


def _change_checks(keys: tuple[Check, Check, Check], cand: float, ref: float, cfg: GateConfig,
                   worst: float | None = None) -> list[GateCheck]:
    """TFX-style change thresholds, absolute and relative, of a higher-is-better metric.

    `worst`: the pessimistic change to gate on (an interval's bound) instead of the point estimate.
    """
    change = (cand - ref) if worst is None else worst
    loss = -change  # > 0: the candidate is worse
    rel_loss = loss / abs(ref) if ref else float("inf") if loss > 0 else 0.0
    checks = [make_check(keys[0], loss, cfg), make_check(keys[1], rel_loss, cfg)]
    if cfg.two_sided:
        checks.append(make_check(keys[2], cand - ref, cfg))
    return checks


def _class_recall_check(cmp: Comparison, cfg: GateConfig, classes: tuple[str, ...]) -> GateCheck:
    if not cmp.recall_deltas:
        return make_check(Check.CLASS_RECALL_DROP, float("nan"), cfg)
    drops = [-d for d in cmp.recall_deltas]
    worst = int(np.argmax(drops))
    check = make_check(Check.CLASS_RECALL_DROP, drops[worst], cfg)
    if not check.passed and math.isfinite(drops[worst]):
        label = classes[worst] if worst < len(classes) else worst
        check = replace(check, note=f"class {label} recall fell by {drops[worst]:.3f} "
                                    f"(limit {cfg.max_class_recall_drop})")
    return check


def quality_checks(ref: EvalResult, cand: EvalResult, cmp: Comparison, cfg: GateConfig,
                   classes: tuple[str, ...]) -> list[GateCheck]:
    """Quality, significance and per-class checks: also the champion/challenger comparison."""
    checks = _change_checks((Check.ACCURACY_LOSS, Check.ACCURACY_RELATIVE_LOSS, Check.ACCURACY_GAIN),
                            cand.accuracy, ref.accuracy, cfg, worst=cmp.accuracy_ci[0])
    for metric, keys in (("macro_f1", (Check.MACRO_F1_LOSS, Check.MACRO_F1_RELATIVE_LOSS, Check.MACRO_F1_GAIN)),
                         ("macro_precision", (Check.MACRO_PRECISION_LOSS, Check.MACRO_PRECISION_RELATIVE_LOSS,
                                              Check.MACRO_PRECISION_GAIN)),
                         ("macro_recall", (Check.MACRO_RECALL_LOSS, Check.MACRO_RECALL_RELATIVE_LOSS,
                                           Check.MACRO_RECALL_GAIN))):
        checks += _change_checks(keys, getattr(cand, metric), getattr(ref, metric), cfg)
    worse = cmp.reference_only_correct > cmp.candidate_only_correct
    significant = worse and cmp.mcnemar_p < cfg.mcnemar_alpha
    checks.append(make_check(Check.MCNEMAR, cmp.mcnemar_p, cfg, passed=not significant,
                             note=(f"significantly worse: {cmp.reference_only_correct} rows lost vs "
                                   f"{cmp.candidate_only_correct} gained, p={cmp.mcnemar_p:.3g} < {cfg.mcnemar_alpha}"
                                   if significant else "")))
    return checks + [_class_recall_check(cmp, cfg, classes)]


def prediction_checks(ref: EvalResult, cand: EvalResult, cmp: Comparison, cfg: GateConfig,
                      classes: tuple[str, ...]) -> list[GateCheck]:
    """Every check that reads only the two models' test predictions: quality, agreement, calibration, robustness."""
    return quality_checks(ref, cand, cmp, cfg, classes) + [
        make_check(Check.AGREEMENT, cmp.agreement, cfg),
        make_check(Check.PROB_DIFF, cmp.max_prob_diff, cfg),
        make_check(Check.ECE_INCREASE, cand.ece - ref.ece, cfg),
        make_check(Check.BRIER_INCREASE, cand.brier - ref.brier, cfg),
        make_check(Check.FGSM_DROP, ref.fgsm_accuracy - cand.fgsm_accuracy, cfg),
    ]
