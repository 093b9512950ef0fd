"""The precision probe: a few dozen timed steps of each candidate before any full training.

A candidate much slower than fp32 on this hardware (fp16 convolutions on a CPU without fp16
units run tens of times slower), or numerically broken from the start, is dropped with its
reason before it costs a full training run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from pipeline.core.config import ProbeConfig, TrainConfig
from pipeline.core.data import Split
from pipeline.core.train import train


@dataclass(frozen=True)
class ProbeResult:
    precision: str
    steps: int
    samples_per_s: float
    nonfinite_losses: int
    skipped_steps: int
    slowdown_vs_fp32: float  # fp32 samples/s over this one's; 1.0 for fp32
    dropped: bool
    reason: str


def probe_one(split: Split, cfg: TrainConfig, precision: str, steps: int,
              device: torch.device | None = None) -> tuple[float, int, int, int]:
    per_epoch = math.ceil(len(split.y_train) / cfg.batch_size)
    short = replace(cfg, epochs=max(1, math.ceil(steps / per_epoch)), scheduler="none")
    r = train(split, short, precision, device=device)
    return r.samples_per_s, r.nonfinite_losses, r.skipped_steps, r.steps


def decide(measured: dict[str, tuple[float, int, int, int]], cfg: ProbeConfig) -> tuple[ProbeResult, ...]:
    """fp32 is the baseline and is never dropped; the rest by speed and numerical health."""
    base = measured["fp32"][0]
    out = []
    for name, (sps, nonfinite, skipped, steps) in measured.items():
        slowdown = base / sps if sps > 0 else math.inf
        reasons = []
        if name != "fp32" and slowdown > cfg.max_slowdown:
            reasons.append(f"{slowdown:.1f}x slower than fp32 in a {steps}-step probe (limit {cfg.max_slowdown:g}x)")
        if name != "fp32" and nonfinite:
            reasons.append(f"non-finite loss in {nonfinite} of {steps} probe steps")
        if name != "fp32" and steps and skipped / steps > cfg.max_skipped_share:
            reasons.append(f"{skipped} of {steps} probe steps skipped for overflow")
        out.append(ProbeResult(name, steps, sps, nonfinite, skipped, slowdown, bool(reasons),
                               "; ".join(reasons) or "kept"))
    return tuple(out)
