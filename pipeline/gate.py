"""Gate each mixed-precision candidate against the fp32 baseline, then select one.

Every check records its value, threshold and verdict. A value the gate needs but could not
compute (NaN, a missing measurement) fails its check: nothing is skipped silently.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from pipeline.config import GateConfig
from pipeline.evaluate import EvalResult, Latency
from pipeline.metrics import bootstrap_delta_ci, flip_matrix, mcnemar_exact


@dataclass(frozen=True)
class CandidateMetrics:
    """One trained precision: its test evaluation and its training telemetry."""

    precision: str
    eval: EvalResult
    samples_per_s: float
    peak_memory_bytes: int
    nonfinite_losses: int
    skipped_share: float = 0.0
    stop_reason: str | None = None  # the trainer stopped early (non-finite loss, too many skipped steps)

    @property
    def accuracy(self) -> float:
        return self.eval.accuracy

    @classmethod
    def of(cls, result, ev: EvalResult) -> "CandidateMetrics":
        return cls(result.precision, ev, result.samples_per_s, result.peak_memory_bytes, result.nonfinite_losses,
                   result.skipped_share, result.stop_reason)


@dataclass(frozen=True)
class GateCheck:
    name: str
    group: str
    value: float
    threshold: float
    op: str  # ">=" or "<=": how value must compare with threshold to pass
    passed: bool
    note: str = ""

    def describe(self) -> str:
        if self.note:
            return f"{self.name}: {self.note}"
        return f"{self.name} {self.value:.4g} (needs {self.op} {self.threshold:.4g})"


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


@dataclass(frozen=True)
class GateVerdict:
    precision: str
    accuracy: float
    accuracy_delta: float
    speedup: float
    memory_ratio: float
    checks: tuple[GateCheck, ...]
    comparison: Comparison | None = None  # None for the baseline itself
    latency_ratio: float = float("nan")
    latency: Latency | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def reason(self) -> str:
        failed = [c for c in self.checks if not c.passed]
        return "; ".join(c.describe() for c in failed) if failed else "passed every check"


@dataclass(frozen=True)
class GateReport:
    baseline: str
    verdicts: tuple[GateVerdict, ...]
    selected: str | None
    reason: str
    selection: str = "fastest"
    classes: tuple[str, ...] = field(default=())

    def verdict(self, precision: str) -> GateVerdict:
        return next(v for v in self.verdicts if v.precision == precision)

    def to_json(self) -> str:
        body = asdict(self)
        for v, raw in zip(self.verdicts, body["verdicts"]):
            raw["passed"], raw["reason"] = v.passed, v.reason
        return json.dumps(body, indent=2, default=_jsonable)

    def to_markdown(self) -> str:
        from pipeline.report import gate_markdown

        return gate_markdown(self)


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


def _check(name: str, group: str, value: float, threshold: float, op: str) -> GateCheck:
    value = float(value)
    if not math.isfinite(value):
        return GateCheck(name, group, value, threshold, op, False, note="could not be computed, so it fails")
    ok = value >= threshold if op == ">=" else value <= threshold
    return GateCheck(name, group, value, threshold, op, ok)


def _change_checks(metric: str, cand: float, ref: float, absolute: float, cfg: GateConfig,
                   higher_is_better: bool = True, worst: float | None = None) -> list[GateCheck]:
    """TFX-style change thresholds: absolute and relative, for a higher- or lower-is-better metric.

    `worst`: the pessimistic change to gate on (the interval's bound) instead of the point estimate.
    """
    change = (cand - ref) if worst is None else worst
    loss = -change if higher_is_better else change  # > 0: the candidate is worse
    rel_loss = loss / abs(ref) if ref else float("inf") if loss > 0 else 0.0
    checks = [_check(f"{metric} loss vs reference", "quality", loss, absolute, "<="),
              _check(f"{metric} relative loss vs reference", "quality", rel_loss, cfg.relative_tolerance, "<=")]
    if cfg.two_sided:
        gain = cand - ref if higher_is_better else ref - cand
        checks.append(_check(f"{metric} gain vs reference (two-sided)", "quality", gain, absolute, "<="))
    return checks


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


def quality_checks(ref: EvalResult, cand: EvalResult, cmp: Comparison, cfg: GateConfig,
                   classes: tuple[str, ...]) -> list[GateCheck]:
    """Quality, significance and per-class checks: also the champion/challenger comparison."""
    checks = _change_checks("accuracy (CI lower bound)", cand.accuracy, ref.accuracy, cfg.accuracy_tolerance,
                            cfg, worst=cmp.accuracy_ci[0])
    checks += _change_checks("macro-F1", cand.macro_f1, ref.macro_f1, cfg.macro_f1_tolerance, cfg)
    checks += _change_checks("macro precision", cand.macro_precision, ref.macro_precision, cfg.precision_tolerance, cfg)
    checks += _change_checks("macro recall", cand.macro_recall, ref.macro_recall, cfg.recall_tolerance, cfg)
    worse = cmp.reference_only_correct > cmp.candidate_only_correct
    checks.append(GateCheck("McNemar exact p (worse only)", "significance", cmp.mcnemar_p, cfg.mcnemar_alpha, ">=",
                            passed=not (worse and cmp.mcnemar_p < cfg.mcnemar_alpha),
                            note=(f"significantly worse: {cmp.reference_only_correct} rows lost vs "
                                  f"{cmp.candidate_only_correct} gained, p={cmp.mcnemar_p:.3g} < {cfg.mcnemar_alpha}"
                                  if worse and cmp.mcnemar_p < cfg.mcnemar_alpha else "")))
    if not cmp.recall_deltas:
        return checks + [_check("largest per-class recall drop", "per-class", float("nan"), 0, "<=")]
    drops = [-d for d in cmp.recall_deltas]
    worst = int(np.argmax(drops))
    check = _check("largest per-class recall drop", "per-class", drops[worst], cfg.max_class_recall_drop, "<=")
    if not check.passed and math.isfinite(drops[worst]):
        label = classes[worst] if worst < len(classes) else worst
        check = GateCheck(**{**asdict(check), "note": f"class {label} recall fell by {drops[worst]:.3f} "
                                                      f"(limit {cfg.max_class_recall_drop})"})
    return checks + [check]


def _candidate_checks(c: CandidateMetrics, base: CandidateMetrics, cmp: Comparison, cfg: GateConfig,
                      classes: tuple[str, ...]) -> tuple[list[GateCheck], float]:
    ce, be = c.eval, base.eval
    checks = quality_checks(be, ce, cmp, cfg, classes)
    checks += [
        _check("agreement with fp32", "agreement", cmp.agreement, cfg.min_agreement, ">="),
        _check("largest probability difference", "agreement", cmp.max_prob_diff, cfg.max_prob_diff, "<="),
        _check("ECE increase", "calibration", ce.ece - be.ece, cfg.max_ece_increase, "<="),
        _check("Brier increase", "calibration", ce.brier - be.brier, cfg.max_brier_increase, "<="),
        _check("FGSM accuracy drop", "robustness", be.fgsm_accuracy - ce.fgsm_accuracy, cfg.max_fgsm_drop, "<="),
        _check("speedup vs fp32", "cost", c.samples_per_s / base.samples_per_s if base.samples_per_s else math.nan,
               cfg.min_speedup, ">="),
        _check("peak memory ratio", "cost", _ratio(c.peak_memory_bytes, base.peak_memory_bytes),
               cfg.max_memory_ratio, "<="),
    ]
    latency = _ratio(ce.latency.p50_ms_batch256 if ce.latency else math.nan,
                     be.latency.p50_ms_batch256 if be.latency else math.nan)
    checks.append(_check("p50 latency ratio at batch 256", "cost", latency, cfg.max_latency_ratio, "<="))
    return checks, latency


def _ratio(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else float("nan")


def _health_checks(c: CandidateMetrics, cfg: GateConfig) -> list[GateCheck]:
    return [
        _check("accuracy floor", "quality", c.accuracy, cfg.min_accuracy, ">="),
        _check("non-finite losses", "health", c.nonfinite_losses, 0, "<="),
        _check("test rows with non-finite outputs", "health", c.eval.nonfinite_outputs, 0, "<="),
        _check("skipped-step share", "health", c.skipped_share, cfg.max_skipped_share, "<="),
        GateCheck("trained to the end", "health", float(c.stop_reason is None), 1.0, ">=", c.stop_reason is None,
                  note=f"stopped early: {c.stop_reason}" if c.stop_reason else ""),
    ]


def _verdict(c: CandidateMetrics, base: CandidateMetrics, y: np.ndarray, cfg: GateConfig,
             classes: tuple[str, ...]) -> GateVerdict:
    speedup = c.samples_per_s / base.samples_per_s if base.samples_per_s else float("nan")
    memory_ratio = _ratio(c.peak_memory_bytes, base.peak_memory_bytes)
    checks, cmp, latency = _health_checks(c, cfg), None, float("nan")
    if c.precision != base.precision:
        cmp = compare(base.eval, c.eval, y, cfg)
        more, latency = _candidate_checks(c, base, cmp, cfg, classes)
        checks += more
    return GateVerdict(c.precision, c.accuracy, c.accuracy - base.accuracy, speedup, memory_ratio, tuple(checks),
                       cmp, latency, c.eval.latency)


def _select(passing: list[GateVerdict], cfg: GateConfig) -> GateVerdict | None:
    if cfg.selection == "fastest":
        return max(passing, key=lambda v: v.speedup)
    if cfg.selection == "most-accurate":
        return max(passing, key=lambda v: (v.accuracy, v.speedup))
    return next((v for v in passing if v.precision == cfg.selection), None)


def gate(candidates: list[CandidateMetrics], y_test: np.ndarray, cfg: GateConfig, baseline: str = "fp32",
         classes: tuple[str, ...] = ()) -> GateReport:
    """The baseline passes on the absolute checks alone; the selection policy picks among the passing."""
    base = next((c for c in candidates if c.precision == baseline), None)
    if base is None:
        raise ValueError(f"the gate needs the {baseline} baseline among the candidates")
    classes = tuple(str(c) for c in classes)
    verdicts = tuple(_verdict(c, base, y_test, cfg, classes) for c in candidates)
    passing = [v for v in verdicts if v.passed]
    best = _select(passing, cfg) if passing else None
    if best is None:
        why = (f"the fixed selection {cfg.selection} did not pass" if passing and cfg.selection not in ("fastest", "most-accurate")
               else f"no precision passed the gates (accuracy floor {cfg.min_accuracy})")
        return GateReport(baseline, verdicts, None, why + "; " + "; ".join(f"{v.precision}: {v.reason}"
                                                                         for v in verdicts if not v.passed),
                          cfg.selection, classes)
    how = {"fastest": f"the fastest precision that passed ({best.speedup:.2f}x fp32)",
           "most-accurate": f"the most accurate precision that passed ({best.accuracy:.4f})"}
    reason = f"{best.precision} is {how.get(cfg.selection, 'the fixed selection and passed')}"
    others = [f"{v.precision}: {v.reason}" for v in verdicts if v.precision != best.precision]
    if others:
        reason += "; " + "; ".join(others)
    return GateReport(baseline, verdicts, best.precision, reason, cfg.selection, classes)
