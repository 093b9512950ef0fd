"""The probe's deadline, on an injected clock: no test here depends on how fast this machine is."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from pipeline.core.config import ProbeConfig, TrainConfig
from pipeline.core.data import Split
from pipeline.core.probe import WARMUP_STEPS, Deadline, Measured, decide, probe_all, probe_one

FP32 = tuple(0.1 * (i + 1) for i in range(20))  # fp32: 0.1 s a step, 20 steps


def test_a_candidate_within_the_limit_is_never_stopped():
    d = Deadline(FP32, max_slowdown=2.0)
    assert all(d.check(i + 1, 1.9 * t, 20) is None for i, t in enumerate(FP32))


def test_warm_up_steps_may_be_slow_but_not_past_the_whole_probe():
    d = Deadline(FP32, max_slowdown=2.0)
    assert d.check(WARMUP_STEPS - 1, 10 * FP32[WARMUP_STEPS - 2], 20) is None  # a slow first step: one-off costs
    verdict = d.check(1, 2.0 * FP32[-1] + 0.01, 20)  # but never past twice fp32's whole probe
    assert verdict is not None
    reason, slowdown = verdict
    assert reason.startswith("stopped after 1 of 20 probe steps") and "whole 20-step probe" in reason
    assert slowdown == pytest.approx((2.0 * FP32[-1] + 0.01) / FP32[0])


def test_after_warm_up_the_same_steps_are_compared():
    d = Deadline(FP32, max_slowdown=2.0)
    reason, slowdown = d.check(WARMUP_STEPS, 2.5 * FP32[WARMUP_STEPS - 1], 20)
    assert slowdown == pytest.approx(2.5)
    assert f"stopped after {WARMUP_STEPS} of 20 probe steps" in reason and "2.5x slower" in reason
    assert "limit 2x" in reason


def _split(n: int = 256, features: int = 8) -> Split:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    cols = tuple(f"f{i}" for i in range(features))
    return Split(x, y, x[:32], y[:32], (0, 1), cols)


class FakeClock:
    """Each read advances by the current precision's seconds per step (one read per step, one at start)."""

    def __init__(self, per_step: dict[str, float]):
        self.per_step, self.precision, self.t = per_step, "fp32", 0.0

    def __call__(self) -> float:
        self.t += self.per_step[self.precision]
        return self.t


CFG = TrainConfig(hidden_size=16, hidden_layers=1, batch_size=16, warmup_steps=1)


def test_a_slow_candidate_stops_early_and_says_what_was_measured():
    clock = FakeClock({"fp32": 0.01, "bf16": 1.0})
    ticks = []

    def before(p):
        clock.precision = p
        ticks.append(p)

    probed = probe_all(_split(), CFG, ProbeConfig(steps=12, max_slowdown=2.0), ("fp32", "bf16"), torch.device("cpu"),
                       before, clock)
    results = {r.precision: r for r in probed}
    assert ticks == ["fp32", "bf16"]
    fp32, bf16 = results["fp32"], results["bf16"]
    assert fp32.steps == 12 and not fp32.dropped
    # fp32's whole probe took 0.12 s on this clock; bf16's first step alone took 1 s, past twice that.
    assert bf16.dropped and bf16.steps == 1
    assert bf16.reason.startswith("stopped after 1 of 12 probe steps: 1 s against fp32's 0.12 s")
    assert bf16.slowdown_vs_fp32 == pytest.approx(100.0)


def test_a_candidate_as_fast_as_fp32_runs_every_step():
    clock = FakeClock({"fp32": 0.01, "bf16": 0.012})
    results = probe_all(_split(), CFG, ProbeConfig(steps=12), ("fp32", "bf16"), torch.device("cpu"),
                        lambda p: setattr(clock, "precision", p), clock)
    bf16 = results[1]
    assert bf16.steps == 12 and not bf16.dropped and bf16.reason == "kept"
    assert bf16.slowdown_vs_fp32 == pytest.approx(1.2)


def test_without_a_deadline_every_planned_step_runs():
    clock = itertools.count(0.0, 5.0).__next__
    m = probe_one(_split(), CFG, "fp32", 7, torch.device("cpu"), clock=clock)
    assert m.steps == m.planned == 7 and m.stopped == "" and len(m.elapsed) == 7


def test_decide_keeps_fp32_and_drops_unhealthy_candidates():
    ok = Measured(10, 10, 100.0, 0, 0, (1.0,))
    sick = Measured(10, 10, 100.0, 3, 0, (1.0,))
    out = {r.precision: r for r in decide({"fp32": ok, "fp16": sick}, ProbeConfig())}
    assert not out["fp32"].dropped
    assert out["fp16"].dropped and "non-finite loss in 3 of 10" in out["fp16"].reason
