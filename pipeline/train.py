"""Training: one loop for every precision; the policy object holds all that differs."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from pipeline import checkpoint, distributed
from pipeline.checkpoint import Checkpointing
from pipeline.config import TrainConfig
from pipeline.data import Split
from pipeline.memory import PeakMemory
from pipeline.models import ModelSpec, build_model
from pipeline.precision import PrecisionPolicy, StepOutcome, optimizer_step
from pipeline.progress import EpochStats

MEMORY_STEPS = 2  # peak memory is read over the first steps (optimizer state appears in step 1)


@dataclass(frozen=True)
class TrainResult:
    precision: str
    policy: PrecisionPolicy
    spec: ModelSpec
    model: nn.Module
    epoch_losses: tuple[float, ...]
    steps: int
    timed_steps: int
    samples_per_s: float  # after warm-up, training steps only
    peak_memory_bytes: int
    wall_s: float
    skipped_steps: int
    nonfinite_losses: int
    nonfinite_grads: int = 0  # steps whose gradient norm was inf/nan (fp16: the scaler skipped them)
    grad_norms: tuple[float, ...] = ()  # per step, after unscaling
    loss_scales: tuple[float, ...] = ()  # per step; 1.0 without loss scaling
    stop_reason: str | None = None  # set when training stopped early; such a model must not pass the gate

    @property
    def skipped_share(self) -> float:
        return self.skipped_steps / self.steps if self.steps else 0.0


def batch_order(n: int, batch_size: int, epochs: int, seed: int) -> list[np.ndarray]:
    """The same index batches for every precision: the comparison is only fair on the same data order."""
    rng = np.random.default_rng(seed)
    return [perm[i:i + batch_size] for _ in range(epochs) for perm in [rng.permutation(n)]
            for i in range(0, n, batch_size)]


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               policy: PrecisionPolicy, scaler: torch.amp.GradScaler) -> tuple[torch.Tensor, StepOutcome]:
    optimizer.zero_grad(set_to_none=True)
    with policy.autocast():
        loss = nn.functional.cross_entropy(model(policy.convert_input(x)).float(), y)
    return loss.detach(), optimizer_step(loss, optimizer, scaler)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
    return None


def health_stop(losses: list[torch.Tensor], skipped: int, steps: int, cfg: TrainConfig) -> str | None:
    """Why training must stop now, or None. Reads the losses: one sync, once per epoch."""
    bad = int((~torch.isfinite(torch.stack(losses))).sum().item()) if losses else 0
    bad = int(distributed.all_sum(bad))  # every rank must take the same decision, or DDP hangs
    if bad and cfg.stop_on_nonfinite:
        return f"non-finite loss in {bad} of {steps} steps"
    if steps and skipped / steps > cfg.max_skipped_share:
        return (f"{skipped} of {steps} optimizer steps skipped for overflow ({skipped / steps:.0%}), "
                f"threshold {cfg.max_skipped_share:.0%}")
    return None


@dataclass
class _Progress:
    """Per-step records; restored from a checkpoint on resume."""
    losses: list[torch.Tensor] = field(default_factory=list)
    norms: list[torch.Tensor] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    skipped: int = 0

    def state(self) -> dict:
        return {"losses": torch.stack(self.losses).cpu(), "norms": torch.stack(self.norms).float().cpu(),
                "scales": torch.tensor(self.scales, dtype=torch.float64), "skipped": self.skipped}

    @classmethod
    def from_state(cls, s: dict) -> _Progress:
        return cls(list(s["losses"].unbind()), list(s["norms"].unbind()), s["scales"].tolist(), int(s["skipped"]))


def _snapshot(model, optimizer, scheduler, scaler, progress: _Progress, step: int, done: dict | None) -> dict:
    return {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler else {}, "scaler": scaler.state_dict(),
            "progress": progress.state(), "done": done or {}}


def _restore(state: dict, model, optimizer, scheduler, scaler) -> tuple[int, _Progress]:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler:
        scheduler.load_state_dict(state["scheduler"])
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    return int(state["step"]), _Progress.from_state(state["progress"])


def train(split: Split, cfg: TrainConfig, policy: PrecisionPolicy,
          checkpointing: Checkpointing | None = None, on_epoch: Callable[[EpochStats], None] | None = None
          ) -> TrainResult:
    """Train one precision; with `checkpointing`, save every N epochs and (resume=True) continue from the last.

    A resumed run measures throughput and peak memory over the steps this process ran."""
    device = policy.device
    spec = ModelSpec(split.x_train.shape[1], len(split.classes), cfg.hidden_size, cfg.hidden_layers, cfg.model)
    torch.manual_seed(cfg.seed)  # identical initial weights for every precision
    net = policy.convert_module(build_model(spec, split.x_train))
    w = distributed.world()
    model = net if w.size == 1 else torch.nn.parallel.DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = policy.make_scaler(cfg.init_scale, cfg.growth_interval)
    x_all = torch.from_numpy(split.x_train).to(device)
    y_all = torch.from_numpy(split.y_train).to(device)
    batches = batch_order(len(y_all), cfg.batch_size, cfg.epochs, cfg.seed)
    per_epoch = len(batches) // cfg.epochs
    scheduler = make_scheduler(optimizer, cfg, len(batches))

    first, progress = 0, _Progress()
    state = checkpoint.load(checkpointing.path, device) if checkpointing and checkpointing.resume else None
    if state is not None:
        first, progress = _restore(state, model, optimizer, scheduler, scaler)
        if state["done"]:  # this precision finished before the run was killed
            return _result(policy, spec, net, progress, per_epoch, **state["done"])
    warmup = first + min(max(cfg.warmup_steps, MEMORY_STEPS), len(batches) - first - 1)

    model.train()
    timed_samples, t_timed, paused = 0, 0.0, 0.0
    stop_reason: str | None = None

    def run(step: int, idx: np.ndarray) -> None:
        nonlocal timed_samples, t_timed
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # warm-up kernels must finish outside the timed window
            t_timed = time.perf_counter()
        ix = torch.from_numpy(distributed.shard(idx, w)).to(device)  # this rank's part of the global batch
        loss, outcome = train_step(model, x_all[ix], y_all[ix], optimizer, policy, scaler)
        progress.losses.append(loss)
        progress.norms.append(outcome.grad_norm)
        progress.scales.append(outcome.scale)
        progress.skipped += int(not outcome.stepped)
        if scheduler is not None and outcome.stepped:  # a skipped step must not advance the schedule
            scheduler.step()
        if step >= warmup:
            timed_samples += len(idx)

    memory = PeakMemory(device, model, optimizer)
    start = time.perf_counter()
    with memory:  # only the first steps: the CPU counter slows every op it sees
        for step in range(first, min(first + MEMORY_STEPS, len(batches))):
            run(step, batches[step])
    for step in range(first + MEMORY_STEPS, len(batches)):
        run(step, batches[step])
        if (step + 1) % per_epoch:
            continue
        if stop_reason := health_stop(progress.losses, progress.skipped, step + 1, cfg):
            break
        if on_epoch is not None and w.is_main:  # after health_stop's sync: this .item() waits on nothing new
            on_epoch(EpochStats((step + 1) // per_epoch, cfg.epochs, step + 1, len(batches),
                                float(torch.stack(progress.losses[-per_epoch:]).float().mean().item()),
                                sum(map(len, batches[first:step + 1])) / max(time.perf_counter() - start, 1e-9)))
        if checkpointing and w.is_main and (step + 1) % (per_epoch * checkpointing.every_epochs) == 0:
            t0 = time.perf_counter()  # saving is not training: kept out of the throughput
            checkpoint.save(checkpointing.path, _snapshot(net, optimizer, scheduler, scaler, progress, step + 1, None))
            paused += time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    end = time.perf_counter()
    done = {"samples_per_s": timed_samples / max(end - t_timed - paused, 1e-9),
            "peak_memory_bytes": memory.peak_bytes, "wall_s": end - start - paused,
            "timed_steps": max(len(progress.losses) - warmup, 0), "stop_reason": stop_reason or ""}
    if w.size > 1:  # the recorded loss of a step: the mean of the ranks' losses on their shards
        stacked = torch.stack(progress.losses).float()
        torch.distributed.all_reduce(stacked)
        progress.losses = list((stacked / w.size).unbind())
    if checkpointing and w.is_main:
        checkpoint.save(checkpointing.path,
                        _snapshot(net, optimizer, scheduler, scaler, progress, len(progress.losses), done))
    return _result(policy, spec, net, progress, per_epoch, **done)


def _result(policy: PrecisionPolicy, spec: ModelSpec, model: nn.Module, progress: _Progress, per_epoch: int,
            samples_per_s: float, peak_memory_bytes: int, wall_s: float, timed_steps: int,
            stop_reason: str) -> TrainResult:
    steps = len(progress.losses)
    loss_values = torch.stack(progress.losses).float().cpu().numpy()
    norm_values = torch.stack(progress.norms).float().cpu().numpy()
    epochs_run = max(1, steps // per_epoch)
    epoch_losses = tuple(float(np.nanmean(loss_values[e * per_epoch:(e + 1) * per_epoch])) for e in range(epochs_run))
    return TrainResult(
        precision=policy.name, policy=policy, spec=spec, model=model.eval(), epoch_losses=epoch_losses,
        steps=steps, timed_steps=int(timed_steps), samples_per_s=float(samples_per_s),
        peak_memory_bytes=int(peak_memory_bytes), wall_s=float(wall_s), skipped_steps=progress.skipped,
        nonfinite_losses=int((~np.isfinite(loss_values)).sum()), nonfinite_grads=int((~np.isfinite(norm_values)).sum()),
        grad_norms=tuple(norm_values.tolist()), loss_scales=tuple(progress.scales), stop_reason=stop_reason or None,
    )
