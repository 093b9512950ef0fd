"""The precision probe: a few dozen timed steps of each candidate before any full training.

A candidate much slower than fp32 on this hardware (fp16 matmuls on a CPU without fp16 units run
tens of times slower), or numerically broken from the start, is dropped with its reason before it
costs a full training run. fp32 is probed first; its clock after every step is the deadline of the
others: a candidate stops as soon as it is past `max_slowdown` times fp32's time for the same steps
(after WARMUP_STEPS, whose one-off costs differ by precision), or past `max_slowdown` times fp32's
whole probe. A mode with no hardware path then costs about that much, not a full probe.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch

from pipeline.core import distributed
from pipeline.core.config import ProbeConfig, TrainConfig
from pipeline.core.data import Split
from pipeline.core.train import run_step, setup_loop

WARMUP_STEPS = 3  # the per-step deadline applies from here on; fp32's whole-probe limit applies from step 1
Clock = Callable[[], float]


@dataclass(frozen=True)
class ProbeResult:
    precision: str
    steps: int
    samples_per_s: float
    nonfinite_losses: int
    skipped_steps: int
    slowdown_vs_fp32: float  # fp32 samples/s over this one's (or seconds over fp32's, when stopped); 1.0 for fp32
    dropped: bool
    reason: str
    seconds: float = 0.0  # wall time of this precision's probe


@dataclass(frozen=True)
class Measured:
    """One precision's probe: what it ran and its clock, in seconds since its first step, after each step."""

    steps: int
    planned: int
    samples_per_s: float
    nonfinite_losses: int
    skipped_steps: int
    elapsed: tuple[float, ...]
    stopped: str = ""  # why it stopped before `planned` steps; "" when it ran them all
    slowdown: float = 0.0  # seconds over fp32's for the same steps, when stopped by the deadline


@dataclass(frozen=True)
class Deadline:
    """fp32's clock after each of its probe steps, and how many times that a candidate may take."""

    reference: tuple[float, ...]
    max_slowdown: float
    warmup: int = WARMUP_STEPS

    def check(self, done: int, elapsed: float, planned: int) -> tuple[str, float] | None:
        """After `done` steps that took `elapsed` seconds: (why to stop, measured slowdown), or None."""
        if not self.reference:
            return None
        same, total = self.reference[min(done, len(self.reference)) - 1], self.reference[-1]
        if done >= self.warmup and elapsed > self.max_slowdown * same:
            against = f"fp32's {same:.3g} s for as many steps"
        elif elapsed > self.max_slowdown * total:
            against = f"fp32's {total:.3g} s for its whole {len(self.reference)}-step probe"
        else:
            return None
        slowdown = elapsed / same if same > 0 else math.inf
        return (f"stopped after {done} of {planned} probe steps: {elapsed:.3g} s against {against}, "
                f"{slowdown:.1f}x slower than fp32 (limit {self.max_slowdown:g}x)", slowdown)


def probe_one(split: Split, cfg: TrainConfig, precision: str, steps: int, device: torch.device | None = None,
              deadline: Deadline | None = None, clock: Clock = time.perf_counter) -> Measured:
    """Up to `steps` training steps from a fresh model; under torchrun every rank stops at the same step."""
    per_epoch = math.ceil(len(split.y_train) / cfg.batch_size)
    short = replace(cfg, epochs=max(1, math.ceil(steps / per_epoch)), scheduler="none")
    loop = setup_loop(split, short, precision, device or torch.device("cpu"))
    loop.warmup = len(loop.batches)  # the trainer's own timed window is not used here
    planned = min(steps, len(loop.batches))
    loop.model.train()
    elapsed: list[float] = []
    stop, slowdown = "", 0.0
    start = clock()
    for step in range(planned):
        run_step(loop, step, loop.batches[step])
        if loop.device.type == "cuda":
            torch.cuda.synchronize(loop.device)  # the clock must see the step's kernels finish
        elapsed.append(clock() - start)
        verdict = deadline.check(step + 1, elapsed[-1], planned) if deadline else None
        if distributed.all_sum(1 if verdict else 0) > 0:  # rank 0 decides; the others must stop with it
            stop, slowdown = verdict or ("stopped with rank 0", 0.0)
            break
    return _measured(loop, planned, tuple(elapsed), stop, slowdown)


def _measured(loop, planned: int, elapsed: tuple[float, ...], stop: str, slowdown: float) -> Measured:
    done = len(elapsed)
    sizes = [len(b) for b in loop.batches[:done]]
    first = min(WARMUP_STEPS, done - 1) if done > 1 else 0  # throughput after the warm-up, as in training
    window = elapsed[-1] - (elapsed[first - 1] if first else 0.0)
    losses = torch.stack(loop.progress.losses).float() if loop.progress.losses else torch.zeros(0)
    return Measured(done, planned, sum(sizes[first:]) / window if window > 0 else 0.0,
                    int((~torch.isfinite(losses)).sum().item()), loop.progress.skipped, elapsed, stop, slowdown)


def decide(measured: dict[str, Measured], cfg: ProbeConfig) -> tuple[ProbeResult, ...]:
    """fp32 is the baseline and is never dropped; the rest by speed and numerical health."""
    base = measured["fp32"].samples_per_s
    out = []
    for name, m in measured.items():
        slowdown = m.slowdown or (base / m.samples_per_s if m.samples_per_s > 0 else math.inf)
        reasons = [m.stopped] if name != "fp32" and m.stopped else []
        if name != "fp32" and not m.stopped and slowdown > cfg.max_slowdown:
            reasons.append(f"{slowdown:.1f}x slower than fp32 in a {m.steps}-step probe (limit {cfg.max_slowdown:g}x)")
        if name != "fp32" and m.nonfinite_losses:
            reasons.append(f"non-finite loss in {m.nonfinite_losses} of {m.steps} probe steps")
        if name != "fp32" and m.steps and m.skipped_steps / m.steps > cfg.max_skipped_share:
            reasons.append(f"{m.skipped_steps} of {m.steps} probe steps skipped for overflow")
        out.append(ProbeResult(name, m.steps, m.samples_per_s, m.nonfinite_losses, m.skipped_steps, slowdown,
                               bool(reasons), "; ".join(reasons) or "kept", m.elapsed[-1] if m.elapsed else 0.0))
    return tuple(out)


def probe_all(split: Split, cfg: TrainConfig, probe: ProbeConfig, precisions: tuple[str, ...],
              device: torch.device, before_each: Callable[[str], None] = lambda p: None,
              clock: Clock = time.perf_counter) -> tuple[ProbeResult, ...]:
    """fp32 first (its clock is the others' deadline), then each candidate."""
    order = ["fp32", *[p for p in precisions if p != "fp32"]]
    measured: dict[str, Measured] = {}
    for p in order:
        before_each(p)
        deadline = Deadline(measured["fp32"].elapsed, probe.max_slowdown) if p != "fp32" else None
        measured[p] = probe_one(split, cfg, p, probe.steps, device, deadline, clock)
    return decide(measured, probe)
