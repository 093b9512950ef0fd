"""The precision sweep's points and Pareto front; the noise floor's spread and suggested tolerances."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from pipeline.core.config import GateConfig
from pipeline.core.evaluate import EvalResult
from pipeline.core.gate import GateReport
from pipeline.core.gate_checks import SPECS, Check, compare, prediction_checks
from pipeline.core.train import TrainResult

# The gated figures that two fp32 runs differing only in seed can disagree on.
NOISE_CHECKS = (Check.ACCURACY_LOSS, Check.MACRO_F1_LOSS, Check.MACRO_PRECISION_LOSS, Check.MACRO_RECALL_LOSS,
                Check.CLASS_RECALL_DROP, Check.AGREEMENT, Check.ECE_INCREASE, Check.BRIER_INCREASE, Check.FGSM_DROP)


@dataclass(frozen=True)
class SweepPoint:
    precision: str
    batch_size: int
    accuracy: float
    macro_f1: float
    ece: float
    samples_per_s: float
    peak_memory_mb: float
    speedup: float  # vs fp32 at the same batch size
    gate_passed: bool
    gate_reason: str
    pareto: bool = False  # no other point is at least as accurate and as fast, and better in one


def sweep_points(batch_size: int, results: list[TrainResult], evals: list[EvalResult],
                 report: GateReport) -> list[SweepPoint]:
    out = []
    for r, e in zip(results, evals):
        v = report.verdict(r.precision)
        out.append(SweepPoint(r.precision, batch_size, e.accuracy, e.macro_f1, e.ece, r.samples_per_s,
                              r.peak_memory_bytes / 2**20, v.speedup, v.passed, v.reason))
    return out


def mark_pareto(points: list[SweepPoint]) -> list[SweepPoint]:
    """Pareto-optimal on (accuracy, throughput), both higher-is-better."""
    def dominated(p: SweepPoint) -> bool:
        return any(q.accuracy >= p.accuracy and q.samples_per_s >= p.samples_per_s
                   and (q.accuracy > p.accuracy or q.samples_per_s > p.samples_per_s) for q in points)
    return [replace(p, pareto=not dominated(p)) for p in points]


@dataclass(frozen=True)
class NoiseRow:
    """One gated quantity across fp32 seeds, measured the way the gate measures it (vs seed 0)."""

    key: Check
    configured: float
    worst: float  # the largest "loss" seen between two fp32 runs that differ only in seed
    spread: float  # standard deviation across the non-reference seeds

    @property
    def name(self) -> str:
        return SPECS[self.key].label

    @property
    def op(self) -> str:
        return SPECS[self.key].op  # "<=" (a loss bound) or ">=" (a floor, e.g. agreement)

    @property
    def config_key(self) -> str:
        return f"gate.{SPECS[self.key].setting}"

    @property
    def suggested(self) -> float:
        """The worst seed-to-seed figure, rounded outward: a tolerance below it fails fp32 itself."""
        if not math.isfinite(self.worst):
            return float("nan")
        return math.ceil(self.worst * 1000) / 1000 if self.op == "<=" else math.floor(self.worst * 1000) / 1000

    @property
    def tighter_than_noise(self) -> bool:
        return self.configured < self.worst if self.op == "<=" else self.configured > self.worst


def noise_rows(ref: EvalResult, others: list[EvalResult], y: np.ndarray, cfg: GateConfig,
               classes: tuple[str, ...]) -> list[NoiseRow]:
    figures: dict[Check, list[float]] = {key: [] for key in NOISE_CHECKS}
    for e in others:
        checks = {c.key: c.value for c in prediction_checks(ref, e, compare(ref, e, y, cfg), cfg, classes)}
        for key in NOISE_CHECKS:
            figures[key].append(checks[key])
    rows = []
    for key, values in figures.items():
        arr = np.array(values, dtype=float)
        worst = float("nan")
        if np.isfinite(arr).any():
            worst = float(np.nanmin(arr) if SPECS[key].op == ">=" else np.nanmax(arr))
        rows.append(NoiseRow(key, float(getattr(cfg, SPECS[key].setting)), worst,
                             float(np.nanstd(arr)) if len(arr) > 1 else 0.0))
    return rows
