"""Training: one loop for every precision; the policy object holds all that differs.

`train(split, cfg, "bf16")` builds a fresh policy (and so a fresh loss scaler) for each training,
trains with the same seed and batch order as every other precision, and returns a TrainResult.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from torch import nn

from pipeline.core import checkpoint, distributed
from pipeline.core.checkpoint import Checkpointing
from pipeline.core.config import TrainConfig
from pipeline.core.data import Split
from pipeline.core.device import resolve_device
from pipeline.core.memory import PeakMemory
from pipeline.core.models import ModelSpec, build_model, with_flops
from pipeline.core.precision import PrecisionPolicy, StepOutcome, make_policy
from pipeline.core.train_state import Loop, restore, snapshot

MEMORY_STEPS = 2  # peak memory is read over the first steps (optimizer state appears in step 1)
HEALTH_STEPS = 16  # on a GPU, the fewest steps between two health checks (see check_due)


@dataclass(frozen=True)
class EpochStats:
    """What the trainer reports at each health check (an epoch end, see check_due), the sync point it already has."""

    epoch: int  # 1-based
    epochs: int
    step: int
    steps: int
    loss: float  # mean training loss of the epoch
    samples_per_s: float  # since the start of this training, wall clock


OnEpoch = Callable[[EpochStats], None]


@dataclass(frozen=True)
class TrainResult:
    precision: str
    policy: PrecisionPolicy
    device: torch.device
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
    final_lr: float = float("nan")  # the learning rate after the last step (the scheduler moves only on real steps)
    restored: bool = False  # finished before this process started: read from its checkpoint, not trained again

    @property
    def skipped_share(self) -> float:
        return self.skipped_steps / self.steps if self.steps else 0.0


def batch_order(n: int, batch_size: int, epochs: int, seed: int, multiple: int = 1) -> list[np.ndarray]:
    """The same index batches for every precision: the comparison is only fair on the same data order.

    `multiple`: each batch is cut to a multiple of this many rows, and an empty one dropped. fp8 needs 16 per
    rank: its last, partial batch of an epoch then loses at most 15 rows instead of failing an fp8 matmul,
    and every other batch keeps the rows and order of every other precision."""
    rng = np.random.default_rng(seed)
    batches = [perm[i:i + batch_size] for _ in range(epochs) for perm in [rng.permutation(n)]
               for i in range(0, n, batch_size)]
    if multiple > 1:
        batches = [b[: len(b) - len(b) % multiple] for b in batches]
    return [b for b in batches if len(b)]


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               policy: PrecisionPolicy) -> tuple[torch.Tensor, StepOutcome]:
    optimizer.zero_grad(set_to_none=True)
    with policy.forward_context():
        loss = nn.functional.cross_entropy(policy.convert_output(model(policy.convert_input(x))), y)
    return loss.detach(), policy.optimizer_step(loss, optimizer)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
    return None


def health_stop(loop: Loop, steps: int, cfg: TrainConfig) -> str | None:
    """Why training must stop now, or None. Reads the losses since the last check: one sync."""
    new = loop.progress.losses[loop.checked:steps]
    bad = int((~torch.isfinite(torch.stack(new))).sum().item()) if new else 0
    loop.nonfinite += int(distributed.all_sum(bad))  # every rank must take the same decision, or DDP hangs
    loop.checked = steps
    skipped = loop.progress.skipped
    if loop.nonfinite and cfg.stop_on_nonfinite:
        return f"non-finite loss in {loop.nonfinite} of {steps} steps"
    if steps and skipped / steps > cfg.max_skipped_share:
        return (f"{skipped} of {steps} optimizer steps skipped for overflow ({skipped / steps:.0%}), "
                f"threshold {cfg.max_skipped_share:.0%}")
    return None


def check_due(loop: Loop, done: int, checkpointing: Checkpointing | None) -> bool:
    """At the end of an epoch; on a GPU not more often than every HEALTH_STEPS steps, since each check drains its
    queue and small data has epochs of a few steps. The last step and a checkpoint's epoch are always checked."""
    if done % loop.per_epoch:
        return False
    if loop.device.type != "cuda":
        return True
    return done - loop.checked >= HEALTH_STEPS or done == len(loop.batches) or saving_due(loop, done, checkpointing)


def saving_due(loop: Loop, done: int, checkpointing: Checkpointing | None) -> bool:
    """Whether the epoch that ends after `done` steps is one to checkpoint."""
    return checkpointing is not None and done % (loop.per_epoch * checkpointing.every_epochs) == 0


def model_spec(split: Split, cfg: TrainConfig) -> ModelSpec:
    """What the model is built from; image data (a split with an `input_spec`) adds its channels and size."""
    given = getattr(split, "input_spec", None)
    image = (given.channels, given.height, given.width) if given is not None and given.channels else None
    return ModelSpec(split.x_train.shape[1], len(split.classes), cfg.hidden_size, cfg.hidden_layers, cfg.model,
                     dict(cfg.model_params), image)


def setup_loop(split: Split, cfg: TrainConfig, precision: str, device: torch.device) -> Loop:
    policy = make_policy(precision, device, cfg.init_scale, cfg.growth_interval)
    spec = model_spec(split, cfg)
    torch.manual_seed(cfg.seed)  # identical initial weights for every precision
    built = build_model(spec, split.x_train)
    spec = with_flops(spec, built)
    net = policy.convert_module(built.to(device))
    w = distributed.world()
    model = net if w.size == 1 else torch.nn.parallel.DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rows = policy.mode.row_multiple
    batches = batch_order(len(split.y_train), cfg.batch_size, cfg.epochs, cfg.seed, rows * w.size if rows > 1 else 1)
    return Loop(policy, device, spec, net, model, optimizer, make_scheduler(optimizer, cfg, len(batches)), w,
                torch.from_numpy(split.x_train).to(device), torch.from_numpy(split.y_train).to(device),
                batches, len(batches) // cfg.epochs)


def run_step(loop: Loop, step: int, idx: np.ndarray) -> None:
    if step == loop.warmup:
        if loop.device.type == "cuda":
            torch.cuda.synchronize(loop.device)  # warm-up kernels must finish outside the timed window
        loop.t_timed = time.perf_counter()
    ix = torch.from_numpy(distributed.shard(idx, loop.world)).to(loop.device)  # this rank's part of the batch
    loss, outcome = train_step(loop.model, loop.x[ix], loop.y[ix], loop.optimizer, loop.policy)
    loop.progress.record(loss, outcome)
    if loop.scheduler is not None and outcome.stepped:  # a skipped step must not advance the schedule
        loop.scheduler.step()
    if step >= loop.warmup:
        loop.timed_samples += len(idx)


def _end_of_epoch(loop: Loop, step: int, cfg: TrainConfig, checkpointing: Checkpointing | None,
                  on_epoch: OnEpoch | None) -> str | None:
    """After the epoch that ends at `step`: the health check, progress and a checkpoint; why to stop, or None."""
    done = step + 1
    stop = health_stop(loop, done, cfg)
    if stop:
        return stop
    if on_epoch is not None and loop.world.is_main:  # after health_stop's sync: this .item() waits on nothing new
        recent = torch.stack(loop.progress.losses[-loop.per_epoch:]).float().mean().item()
        seen = sum(map(len, loop.batches[loop.first:done]))
        on_epoch(EpochStats(done // loop.per_epoch, cfg.epochs, done, len(loop.batches), float(recent),
                            seen / max(time.perf_counter() - loop.start, 1e-9)))
    if loop.world.is_main and saving_due(loop, done, checkpointing):
        t0 = time.perf_counter()  # saving is not training: kept out of the throughput
        checkpoint.save(checkpointing.path, snapshot(loop, done, None))
        loop.paused += time.perf_counter() - t0
    return None


def train(split: Split, cfg: TrainConfig, precision: str, checkpointing: Checkpointing | None = None,
          on_epoch: OnEpoch | None = None, device: torch.device | None = None) -> TrainResult:
    """Train one precision; with `checkpointing`, save every N epochs and (resume=True) continue from the last.

    A resumed run measures throughput and peak memory over the steps this process ran."""
    loop = setup_loop(split, cfg, precision, device or resolve_device(cfg.device))
    state = checkpoint.load(checkpointing.path, loop.device) if checkpointing and checkpointing.resume else None
    if state is not None:
        restore(loop, state)
        if state["done"]:  # this precision finished before the run was killed
            return replace(_result(loop, **state["done"]), restored=True)
    elif checkpointing and loop.world.is_main:
        checkpoint.discard_eval(checkpointing.path)
    loop.warmup = loop.first + min(max(cfg.warmup_steps, MEMORY_STEPS), len(loop.batches) - loop.first - 1)
    loop.model.train()
    memory = PeakMemory(loop.device, loop.model, loop.optimizer)
    loop.start = time.perf_counter()
    with memory:  # only the first steps: the CPU counter slows every op it sees
        for step in range(loop.first, min(loop.first + MEMORY_STEPS, len(loop.batches))):
            run_step(loop, step, loop.batches[step])
    stop_reason = None
    for step in range(loop.first + MEMORY_STEPS, len(loop.batches)):
        run_step(loop, step, loop.batches[step])
        if check_due(loop, step + 1, checkpointing):
            if stop_reason := _end_of_epoch(loop, step, cfg, checkpointing, on_epoch):
                break
    done = _finish(loop, memory.peak_bytes, stop_reason)
    if checkpointing and loop.world.is_main:
        checkpoint.save(checkpointing.path, snapshot(loop, len(loop.progress.losses), done))
    return _result(loop, **done)


def _finish(loop: Loop, peak_bytes: int, stop_reason: str | None) -> dict:
    """The timed figures of this process's steps (plain data: they go into the final checkpoint)."""
    if loop.device.type == "cuda":
        torch.cuda.synchronize(loop.device)
    end = time.perf_counter()
    if loop.world.size > 1:  # the recorded loss of a step: the mean of the ranks' losses on their shards
        stacked = torch.stack(loop.progress.losses).float()
        torch.distributed.all_reduce(stacked)
        loop.progress.losses = list((stacked / loop.world.size).unbind())
    return {"samples_per_s": loop.timed_samples / max(end - loop.t_timed - loop.paused, 1e-9),
            "peak_memory_bytes": peak_bytes, "wall_s": end - loop.start - loop.paused,
            "timed_steps": max(len(loop.progress.losses) - loop.warmup, 0), "stop_reason": stop_reason or ""}


def _result(loop: Loop, samples_per_s: float, peak_memory_bytes: int, wall_s: float, timed_steps: int,
            stop_reason: str) -> TrainResult:
    p, per_epoch = loop.progress, loop.per_epoch
    steps = len(p.losses)
    loss_values = torch.stack(p.losses).float().cpu().numpy()
    norm_values = torch.stack(p.norms).float().cpu().numpy()
    epoch_losses = tuple(float(np.nanmean(loss_values[e * per_epoch:(e + 1) * per_epoch]))
                         for e in range(max(1, steps // per_epoch)))
    return TrainResult(
        precision=loop.policy.name, policy=loop.policy, device=loop.device, spec=loop.spec, model=loop.net.eval(),
        epoch_losses=epoch_losses, steps=steps, timed_steps=int(timed_steps), samples_per_s=float(samples_per_s),
        peak_memory_bytes=int(peak_memory_bytes), wall_s=float(wall_s), skipped_steps=p.skipped,
        nonfinite_losses=int((~np.isfinite(loss_values)).sum()), nonfinite_grads=int((~np.isfinite(norm_values)).sum()),
        grad_norms=tuple(norm_values.tolist()), loss_scales=tuple(p.scales), stop_reason=stop_reason or None,
        final_lr=float(loop.optimizer.param_groups[0]["lr"]),
    )
