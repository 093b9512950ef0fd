"""The mutable state of one training run, and its checkpoint form (plain tensors and numbers only)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.core.distributed import World
from pipeline.core.models import ModelSpec
from pipeline.core.precision import PrecisionPolicy, StepOutcome


@dataclass
class Progress:
    """Per-step records; restored from a checkpoint on resume."""

    losses: list[torch.Tensor] = field(default_factory=list)
    norms: list[torch.Tensor] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    skipped: int = 0

    def record(self, loss: torch.Tensor, outcome: StepOutcome) -> None:
        self.losses.append(loss)
        self.norms.append(outcome.grad_norm)
        self.scales.append(outcome.scale)
        self.skipped += int(not outcome.stepped)

    def state(self) -> dict:
        return {"losses": torch.stack(self.losses).cpu(), "norms": torch.stack(self.norms).float().cpu(),
                "scales": torch.tensor(self.scales, dtype=torch.float64), "skipped": self.skipped}

    @classmethod
    def from_state(cls, s: dict) -> Progress:
        return cls(list(s["losses"].unbind()), list(s["norms"].unbind()), s["scales"].tolist(), int(s["skipped"]))


@dataclass
class Loop:
    """Everything one training's steps read and write; `model` is `net`, or its DDP wrapper under torchrun."""

    policy: PrecisionPolicy
    device: torch.device
    spec: ModelSpec
    net: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object | None
    world: World
    x: torch.Tensor  # (n_train, n_features) on the device
    y: torch.Tensor  # (n_train,)
    batches: list[np.ndarray]
    per_epoch: int
    progress: Progress = field(default_factory=Progress)
    first: int = 0  # the first step this process runs (after a resume, the checkpoint's)
    warmup: int = 0  # the first timed step
    start: float = 0.0
    t_timed: float = 0.0
    timed_samples: int = 0
    paused: float = 0.0  # seconds spent writing checkpoints, kept out of the throughput
    checked: int = 0  # steps covered by the last health check
    nonfinite: int = 0  # non-finite losses found by the health checks so far


def snapshot(loop: Loop, step: int, done: dict | None) -> dict:
    return {"step": step, "model": loop.net.state_dict(), "optimizer": loop.optimizer.state_dict(),
            "scheduler": loop.scheduler.state_dict() if loop.scheduler else {},
            "scaler": loop.policy.state_dict(), "progress": loop.progress.state(), "done": done or {}}


def restore(loop: Loop, state: dict) -> None:
    loop.net.load_state_dict(state["model"])
    loop.optimizer.load_state_dict(state["optimizer"])
    if loop.scheduler:
        loop.scheduler.load_state_dict(state["scheduler"])
    loop.policy.load_state_dict(state["scaler"])
    loop.first, loop.progress = int(state["step"]), Progress.from_state(state["progress"])
    loop.checked = loop.first  # the steps before passed their checks in the killed run
