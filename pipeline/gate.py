"""Gate each mixed-precision candidate against the fp32 baseline, then select one."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from pipeline.config import GateConfig


@dataclass(frozen=True)
class CandidateMetrics:
    precision: str
    accuracy: float
    macro_f1: float
    samples_per_s: float
    peak_memory_bytes: int
    nonfinite_losses: int
    skipped_share: float = 0.0
    stop_reason: str | None = None  # the trainer stopped early (non-finite loss, too many skipped steps)


@dataclass(frozen=True)
class GateCheck:
    name: str
    value: float
    threshold: float
    passed: bool
    note: str = ""


@dataclass(frozen=True)
class GateVerdict:
    precision: str
    accuracy: float
    accuracy_delta: float
    speedup: float
    memory_ratio: float
    checks: tuple[GateCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def reason(self) -> str:
        failed = [c for c in self.checks if not c.passed]
        if not failed:
            return "passed every check"
        return "; ".join(c.note or f"{c.name} {c.value:.4g} vs threshold {c.threshold:.4g}" for c in failed)


@dataclass(frozen=True)
class GateReport:
    baseline: str
    verdicts: tuple[GateVerdict, ...]
    selected: str | None
    reason: str

    def verdict(self, precision: str) -> GateVerdict:
        return next(v for v in self.verdicts if v.precision == precision)

    def to_json(self) -> str:
        body = asdict(self)
        for v, raw in zip(self.verdicts, body["verdicts"]):
            raw["passed"], raw["reason"] = v.passed, v.reason
        return json.dumps(body, indent=2)


def _verdict(c: CandidateMetrics, base: CandidateMetrics, cfg: GateConfig) -> GateVerdict:
    delta = c.accuracy - base.accuracy
    speedup = c.samples_per_s / base.samples_per_s
    memory_ratio = c.peak_memory_bytes / base.peak_memory_bytes if base.peak_memory_bytes else float("nan")
    checks = [
        GateCheck("accuracy floor", c.accuracy, cfg.min_accuracy, c.accuracy >= cfg.min_accuracy),
        GateCheck("finite loss", float(c.nonfinite_losses), 0.0, c.nonfinite_losses == 0),
        GateCheck("trained to the end", float(c.stop_reason is None), 1.0, c.stop_reason is None,
                  note=f"stopped early: {c.stop_reason}" if c.stop_reason else ""),
    ]
    if c.precision != base.precision:
        checks += [
            GateCheck("accuracy delta vs fp32", delta, -cfg.accuracy_tolerance, delta >= -cfg.accuracy_tolerance),
            GateCheck("speedup vs fp32", speedup, cfg.min_speedup, speedup >= cfg.min_speedup),
        ]
    return GateVerdict(c.precision, c.accuracy, delta, speedup, memory_ratio, tuple(checks))


def gate(candidates: list[CandidateMetrics], cfg: GateConfig, baseline: str = "fp32") -> GateReport:
    """Fastest passing candidate; the baseline itself passes on the absolute checks alone."""
    base = next((c for c in candidates if c.precision == baseline), None)
    if base is None:
        raise ValueError(f"the gate needs the {baseline} baseline among the candidates")
    verdicts = tuple(_verdict(c, base, cfg) for c in candidates)
    passing = [v for v in verdicts if v.passed]
    if not passing:
        return GateReport(baseline, verdicts, None,
                          f"no precision passed the gates (accuracy floor {cfg.min_accuracy})")
    best = max(passing, key=lambda v: v.speedup)
    others = [f"{v.precision}: {v.reason}" for v in verdicts if v.precision != best.precision]
    reason = f"{best.precision} is the fastest precision that passed ({best.speedup:.2f}x fp32)"
    if others:
        reason += "; " + "; ".join(others)
    return GateReport(baseline, verdicts, best.precision, reason)
