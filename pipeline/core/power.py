"""What the gate could have missed: the smallest degradation each check detects, at this test set's size.

A degradation of `drop` is modelled on the paired design of the gate: each of `rows` test rows is
independently *lost* (only the reference gets it right) with probability background/2 + drop and
*gained* with probability background/2, where `background` is the share of rows that flip
either way with no drop at all. A check that fails a candidate once at least t(m) of the m
discordant rows are lost then fails with the exact probability

    sum over m of Binomial(m; rows, background + drop) * P(Binomial(m, q) >= t(m)),
    q = (background/2 + drop) / (background + drop),

and its detectable effect is the smallest drop at which that reaches `gate.power`.

Which checks get a figure, and why:
- accuracy: the exact McNemar test (`Check.MCNEMAR`), at the gate's own alpha and one-sided rule.
  It is the one accuracy check whose false alarms are bounded (a candidate exactly as good as
  fp32 fails it at most alpha/2 of the time at any size), so its power is what this test set can
  see. The interval bound (`accuracy_loss`, `accuracy_relative_loss`) is a non-inferiority rule:
  it fails whatever it cannot clear, and on a small test set a single lost row fails it, so its
  rejections there say nothing about what the set can resolve; bench/gate_power.py prints its
  rejection rate beside this figure, always at or above it.
- per-class recall: the same model on the smallest class's rows, against its point-estimate rule.
- macro recall: the same on all rows, for a drop spread over the classes in proportion to their
  rows (each class's recall then falls by the same amount, and so does their mean).
- Brier score: a mean over rows, so the check sees a normal variable whose spread is that of the
  observed per-row differences.
- macro-F1, macro precision, ECE, FGSM and the relative tolerances of the macro metrics: no figure.
  Precision depends on which class the lost rows are given to, not on how many are lost; ECE is a
  sum of binned absolute gaps, not a mean over rows; neither has a sampling model at this size
  without guessing how the degradation looks.

Point-estimate checks (per-class recall, macro recall, Brier) fail a candidate whose true loss is
exactly their tolerance about half the time at any test size, so their figure always exceeds the
tolerance: it is reported, never held against it. Only the accuracy figure is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom, norm

from pipeline.core.config import GateConfig
from pipeline.core.evaluate import EvalResult
from pipeline.core.gate_checks import Check, Comparison, GateCheck
from pipeline.core.metrics import brier_rows

TAIL = 1e-12  # binomial mass left out of the sums, at each end
RESOLUTION = 1e-5  # of a detectable drop (a thousandth of a point)


@dataclass(frozen=True)
class McNemarRule:
    """The gate's McNemar check: fails when more rows are lost than gained and the exact p < alpha."""

    alpha: float

    def lost_needed(self, m: np.ndarray, rows: int) -> np.ndarray:
        """Per discordant count m: the fewest lost rows that fail the check (m + 1: none does)."""
        m = np.asarray(m, dtype=np.int64)
        if self.alpha <= 0:
            return m + 1
        k = binom.ppf(1 - self.alpha / 2, m, 0.5) + 1  # about the smallest k with 2 P(X >= k) < alpha
        k = np.where(self._p(k - 1, m) < self.alpha, k - 1, k)  # step over the float edges of ppf
        k = np.where(self._p(k, m) < self.alpha, k, k + 1)
        k = np.maximum(k, m // 2 + 1)  # "worse": more lost than gained
        return np.where(k > m, m + 1, k).astype(np.int64)

    @staticmethod
    def _p(k: np.ndarray, m: np.ndarray) -> np.ndarray:
        """scipy's two-sided binomtest p at 0.5 for k > m/2: twice the upper tail."""
        return np.minimum(1.0, 2 * binom.sf(k - 1, m, 0.5))


@dataclass(frozen=True)
class LossRule:
    """A point-estimate check: fails when (lost - gained) / rows exceeds the tolerance."""

    tolerance: float

    def lost_needed(self, m: np.ndarray, rows: int) -> np.ndarray:
        m = np.asarray(m, dtype=np.int64)
        k = np.floor((self.tolerance * rows + m) / 2) + 1
        k = np.where((2 * (k - 1) - m) / rows > self.tolerance, k - 1, k)  # the float comparison the gate makes
        k = np.where((2 * k - m) / rows > self.tolerance, k, k + 1)
        return np.where(k > m, m + 1, np.maximum(k, 0)).astype(np.int64)


Rule = McNemarRule | LossRule


def background_discordance(lost: int, gained: int, rows: int) -> float:
    """The share of rows that flipped either way, all counted as background.

    Counting the lost rows of a real drop as background too can only overstate the detectable drop,
    never flatter the test; splitting them off (2 * gained) would understate it for every harmless
    candidate, whose flips are symmetric but seldom exactly balanced."""
    return (lost + gained) / rows if rows > 0 else 0.0


def detection_probability(rows: int, background: float, drop: float, rule: Rule) -> float:
    """Exact probability that `rule` fails a candidate with this true drop, on `rows` test rows."""
    discordance = min(1.0, background + drop)
    if rows <= 0 or discordance <= 0:
        return 0.0
    lo, hi = binom.ppf(TAIL, rows, discordance), binom.isf(TAIL, rows, discordance)
    m = np.arange(int(lo), int(hi) + 1)
    lost_share = min(1.0, (background / 2 + drop) / discordance)
    needed = rule.lost_needed(m, rows)
    return float(np.sum(binom.pmf(m, rows, discordance) * binom.sf(needed - 1, m, lost_share)))


def detectable_drop(rows: int, background: float, rule: Rule, power: float) -> float:
    """The smallest drop `rule` detects with probability >= power; inf where no drop does."""
    cap = 1.0 - background
    if detection_probability(rows, background, cap, rule) < power:
        return math.inf
    if detection_probability(rows, background, 0.0, rule) >= power:
        return 0.0
    lo, hi = 0.0, cap
    for step in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5):  # bracket low first: small drops need few rows summed
        if step >= cap:
            break
        if detection_probability(rows, background, step, rule) >= power:
            hi = step
            break
        lo = step
    while hi - lo > RESOLUTION:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if detection_probability(rows, background, mid, rule) >= power else (mid, hi)
    return hi


def rows_needed(background: float, tolerance: float, rule: Rule, power: float, limit: int = 10**8) -> int | None:
    """About the fewest test rows at which `rule` detects a drop of `tolerance` with probability >= power.

    Exact tests are saw-toothed in the row count, so a few rows more or less can cross back; this
    is the first crossing a bisection finds. None: out of reach (no tolerance, or past `limit`)."""
    if tolerance <= 0 or background + tolerance > 1:
        return None
    hi = 8
    while detection_probability(hi, background, tolerance, rule) < power:
        hi *= 2
        if hi > limit:
            return None
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if detection_probability(mid, background, tolerance, rule) >= power else (mid, hi)
    return hi


def mean_shift_detectable(diffs: np.ndarray, tolerance: float, power: float) -> float:
    """A check on a mean over rows fails when the observed mean passes `tolerance`: by the CLT a true
    increase of tolerance + z(power) * standard error does so with probability `power`."""
    if len(diffs) < 2 or not np.all(np.isfinite(diffs)):
        return math.nan
    return float(tolerance + norm.ppf(power) * diffs.std(ddof=1) / math.sqrt(len(diffs)))


@dataclass(frozen=True)
class Detectable:
    """One check's figure: the smallest true degradation it catches with the configured probability."""

    key: Check
    drop: float  # inf: no degradation is caught that often at this size
    tolerance: float
    rows: int  # the test rows it rests on (one class's, for the per-class check)
    basis: str  # for people: how it was figured


@dataclass(frozen=True)
class PowerReport:
    power: float
    rows: int
    background: float  # share of test rows that flipped either way (background_discordance)
    figures: tuple[Detectable, ...]
    rows_needed: int | None  # test rows at which the accuracy figure meets its tolerance, at this discordance

    def figure(self, key: Check) -> Detectable | None:
        return next((f for f in self.figures if f.key == key), None)

    @property
    def accuracy(self) -> Detectable:
        return self.figure(Check.MCNEMAR)

    @property
    def short(self) -> bool:
        """The test set cannot see a drop of the accuracy tolerance often enough."""
        return not self.accuracy.drop <= self.accuracy.tolerance

    @property
    def sentence(self) -> str:
        drop = self.accuracy.drop
        seen = (f"detects an accuracy drop of >= {drop * 100:.1f} points {self.power:.0%} of the time"
                if math.isfinite(drop) else f"detects no accuracy drop {self.power:.0%} of the time")
        return f"with {self.rows} test rows this gate {seen}"

    @property
    def advice(self) -> str:
        tol = f"{self.accuracy.tolerance * 100:.3g}-point"
        if self.rows_needed is None:
            return f"no test size detects a {tol} drop {self.power:.0%} of the time at this discordance"
        return (f"a test set of >= {self.rows_needed} rows would detect a {tol} drop {self.power:.0%} of the time "
                f"at this discordance ({self.background:.1%} of rows flipped either way)")


def _accuracy_figure(cmp: Comparison, ref: EvalResult, rows: int, background: float,
                     cfg: GateConfig) -> tuple[Detectable, int | None]:
    rule = McNemarRule(cfg.mcnemar_alpha)
    # the largest drop the config accepts: both the absolute and the relative tolerance must hold
    tolerance = min(cfg.accuracy_tolerance, cfg.relative_tolerance * ref.accuracy)
    drop = detectable_drop(rows, background, rule, cfg.power)
    basis = (f"exact McNemar (p < {cfg.mcnemar_alpha:g}) on {cmp.reference_only_correct + cmp.candidate_only_correct} "
             f"discordant of {rows} rows")
    return Detectable(Check.MCNEMAR, drop, tolerance, rows, basis), rows_needed(background, tolerance, rule, cfg.power)


def _class_figure(y: np.ndarray, n_classes: int, background: float, cfg: GateConfig,
                  classes: tuple[str, ...]) -> Detectable | None:
    support = np.bincount(y, minlength=n_classes)
    present = np.flatnonzero(support)
    if not len(present):
        return None
    smallest = int(present[np.argmin(support[present])])
    label = classes[smallest] if smallest < len(classes) else str(smallest)
    rows = int(support[smallest])
    drop = detectable_drop(rows, background, LossRule(cfg.max_class_recall_drop), cfg.power)
    return Detectable(Check.CLASS_RECALL_DROP, drop, cfg.max_class_recall_drop, rows,
                      f"recall of the smallest class ({label}, {rows} rows), point estimate")


def _brier_figure(ref: EvalResult, cand: EvalResult, y: np.ndarray, cfg: GateConfig) -> Detectable | None:
    if ref.probabilities is None or cand.probabilities is None:
        return None
    diffs = brier_rows(y, cand.probabilities) - brier_rows(y, ref.probabilities)
    drop = mean_shift_detectable(diffs, cfg.max_brier_increase, cfg.power)
    if not math.isfinite(drop):
        return None
    return Detectable(Check.BRIER_INCREASE, drop, cfg.max_brier_increase, len(y),
                      "mean of per-row Brier differences, normal approximation")


def power_report(ref: EvalResult, cand: EvalResult, cmp: Comparison, y: np.ndarray, cfg: GateConfig,
                 classes: tuple[str, ...] = ()) -> PowerReport | None:
    """Every figure for one candidate against its reference; None without test rows."""
    rows = len(y)
    if rows == 0:
        return None
    background = background_discordance(cmp.reference_only_correct, cmp.candidate_only_correct, rows)
    accuracy, needed = _accuracy_figure(cmp, ref, rows, background, cfg)
    recall = Detectable(Check.MACRO_RECALL_LOSS,
                        detectable_drop(rows, background, LossRule(cfg.recall_tolerance), cfg.power),
                        cfg.recall_tolerance, rows, "a drop spread over the classes by their rows, point estimate")
    optional = (_class_figure(y, len(cand.per_class_recall), background, cfg, classes),
                _brier_figure(ref, cand, y, cfg))
    figures = (accuracy, recall, *(f for f in optional if f is not None))
    return PowerReport(cfg.power, rows, background, figures, needed)


def power_check(report: PowerReport | None, cfg: GateConfig) -> GateCheck:
    """The accuracy figure against its tolerance: a warning (a passing check with a note), or with
    `gate.require_power` a failure naming the test size needed."""
    if report is None:
        return GateCheck(Check.ACCURACY_POWER, math.nan, cfg.accuracy_tolerance, False,
                         note="no test rows, so nothing is detectable")
    acc = report.accuracy
    note = (f"{report.sentence}, more than the {acc.tolerance * 100:.3g}-point tolerance; {report.advice}"
            if report.short else "")
    if report.short and cfg.mcnemar_alpha <= 0:
        note += " (gate.mcnemar_alpha is 0: the gate has no significance test for accuracy)"
    return GateCheck(Check.ACCURACY_POWER, acc.drop, acc.tolerance, not (report.short and cfg.require_power), note)
