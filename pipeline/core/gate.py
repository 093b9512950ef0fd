"""Gate each mixed-precision candidate against the fp32 baseline, then select one.

Every check records its value, threshold and verdict under a stable key (pipeline.core.gate_checks).
A value the gate needs but could not compute (NaN, a missing measurement) fails its check:
nothing is skipped silently.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from pipeline.core import strict_json
from pipeline.core.config import SELECTIONS, GateConfig
from pipeline.core.evaluate import EvalResult, Latency
from pipeline.core.gate_checks import Check, Comparison, GateCheck, compare, make_check, prediction_checks
from pipeline.core.modes import BASELINE
from pipeline.core.power import PowerReport, power_check, power_report


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
        """From a TrainResult (any object with its telemetry fields) and its evaluation."""
        return cls(result.precision, ev, result.samples_per_s, result.peak_memory_bytes, result.nonfinite_losses,
                   result.skipped_share, result.stop_reason)


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
    power: PowerReport | None = None  # what the checks could have missed at this test size; None for the baseline

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Checks that passed but have something to say (a test set too small to see a tolerance-size drop)."""
        return tuple(c.describe() for c in self.checks if c.passed and c.note)

    @property
    def reason(self) -> str:
        failed = [c for c in self.checks if not c.passed]
        return "; ".join(c.describe() for c in failed) if failed else "passed every check"

    def check(self, key: Check) -> GateCheck | None:
        return next((c for c in self.checks if c.key == key), None)


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
            raw["passed"], raw["reason"], raw["warnings"] = v.passed, v.reason, list(v.warnings)
            raw["power_summary"] = v.power.sentence if v.power else None
            for c, rc in zip(v.checks, raw["checks"]):
                figure = v.power.figure(c.key) if v.power else None
                rc.update(name=c.name, group=c.group, op=c.op, detectable=figure.drop if figure else None)
        return strict_json.dumps(body, indent=2)


def _ratio(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else float("nan")


def _cost_checks(c: CandidateMetrics, base: CandidateMetrics, cfg: GateConfig) -> list[GateCheck]:
    latency = _ratio(c.eval.latency.p50_ms_batch256 if c.eval.latency else math.nan,
                     base.eval.latency.p50_ms_batch256 if base.eval.latency else math.nan)
    return [make_check(Check.SPEEDUP, _ratio(c.samples_per_s, base.samples_per_s), cfg),
            make_check(Check.MEMORY_RATIO, _ratio(c.peak_memory_bytes, base.peak_memory_bytes), cfg),
            make_check(Check.LATENCY_RATIO, latency, cfg)]


def _health_checks(c: CandidateMetrics, cfg: GateConfig) -> list[GateCheck]:
    return [
        make_check(Check.ACCURACY_FLOOR, c.accuracy, cfg),
        make_check(Check.NONFINITE_LOSSES, c.nonfinite_losses, cfg),
        make_check(Check.NONFINITE_OUTPUTS, c.eval.nonfinite_outputs, cfg),
        make_check(Check.SKIPPED_SHARE, c.skipped_share, cfg),
        make_check(Check.TRAINED_TO_END, float(c.stop_reason is None), cfg,
                   note=f"stopped early: {c.stop_reason}" if c.stop_reason else ""),
    ]


def _verdict(c: CandidateMetrics, base: CandidateMetrics, y: np.ndarray, cfg: GateConfig,
             classes: tuple[str, ...]) -> GateVerdict:
    checks, cmp, latency, power = _health_checks(c, cfg), None, float("nan"), None
    if c.precision != base.precision:
        cmp = compare(base.eval, c.eval, y, cfg)
        cost = _cost_checks(c, base, cfg)
        power = power_report(base.eval, c.eval, cmp, y, cfg, classes)
        checks += prediction_checks(base.eval, c.eval, cmp, cfg, classes) + [power_check(power, cfg)] + cost
        latency = cost[-1].value
    return GateVerdict(c.precision, c.accuracy, c.accuracy - base.accuracy, _ratio(c.samples_per_s, base.samples_per_s),
                       _ratio(c.peak_memory_bytes, base.peak_memory_bytes), tuple(checks), cmp, latency,
                       c.eval.latency, power)


def _select(passing: list[GateVerdict], cfg: GateConfig) -> GateVerdict | None:
    if cfg.selection == "fastest":
        return max(passing, key=lambda v: v.speedup)
    if cfg.selection == "most-accurate":
        return max(passing, key=lambda v: (v.accuracy, v.speedup))
    return next((v for v in passing if v.precision == cfg.selection), None)


def _why(best: GateVerdict | None, verdicts: tuple[GateVerdict, ...], passing: list, cfg: GateConfig) -> str:
    if best is None:
        why = (f"the fixed selection {cfg.selection} did not pass" if passing and cfg.selection not in SELECTIONS
               else f"no precision passed the gates (accuracy floor {cfg.min_accuracy})")
        return why + "; " + "; ".join(f"{v.precision}: {v.reason}" for v in verdicts if not v.passed)
    how = {"fastest": f"the fastest precision that passed ({best.speedup:.2f}x fp32)",
           "most-accurate": f"the most accurate precision that passed ({best.accuracy:.4f})"}
    reason = f"{best.precision} is {how.get(cfg.selection, 'the fixed selection and passed')}"
    others = [f"{v.precision}: {v.reason}" for v in verdicts if v.precision != best.precision]
    return reason + ("; " + "; ".join(others) if others else "")


def gate(candidates: list[CandidateMetrics], y_test: np.ndarray, cfg: GateConfig, baseline: str = BASELINE,
         classes: tuple = ()) -> GateReport:
    """The baseline passes on the absolute checks alone; the selection policy picks among the passing."""
    base = next((c for c in candidates if c.precision == baseline), None)
    if base is None:
        raise ValueError(f"the gate needs the {baseline} baseline among the candidates")
    classes = tuple(str(c) for c in classes)
    verdicts = tuple(_verdict(c, base, y_test, cfg, classes) for c in candidates)
    passing = [v for v in verdicts if v.passed]
    best = _select(passing, cfg) if passing else None
    return GateReport(baseline, verdicts, best.precision if best else None, _why(best, verdicts, passing, cfg),
                      cfg.selection, classes)
