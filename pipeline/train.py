"""Training: one loop for every precision; the policy object holds all that differs."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.config import TrainConfig
from pipeline.data import Split
from pipeline.memory import PeakMemory
from pipeline.models import ModelSpec, build_model
from pipeline.precision import PrecisionPolicy, StepOutcome, optimizer_step

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
    if bad and cfg.stop_on_nonfinite:
        return f"non-finite loss in {bad} of {steps} steps"
    if steps and skipped / steps > cfg.max_skipped_share:
        return (f"{skipped} of {steps} optimizer steps skipped for overflow ({skipped / steps:.0%}), "
                f"threshold {cfg.max_skipped_share:.0%}")
    return None


def train(split: Split, cfg: TrainConfig, policy: PrecisionPolicy) -> TrainResult:
    device = policy.device
    spec = ModelSpec(split.x_train.shape[1], len(split.classes), cfg.hidden_size, cfg.hidden_layers)
    torch.manual_seed(cfg.seed)  # identical initial weights for every precision
    model = policy.convert_module(build_model(spec, split.x_train))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = policy.make_scaler(cfg.init_scale, cfg.growth_interval)
    x_all = torch.from_numpy(split.x_train).to(device)
    y_all = torch.from_numpy(split.y_train).to(device)
    batches = batch_order(len(y_all), cfg.batch_size, cfg.epochs, cfg.seed)
    per_epoch = len(batches) // cfg.epochs
    scheduler = make_scheduler(optimizer, cfg, len(batches))
    warmup = min(max(cfg.warmup_steps, MEMORY_STEPS), len(batches) - 1)

    model.train()
    losses: list[torch.Tensor] = []
    norms: list[torch.Tensor] = []
    scales: list[float] = []
    skipped, timed_samples, t_timed = 0, 0, 0.0
    stop_reason: str | None = None

    def run(step: int, idx: np.ndarray) -> None:
        nonlocal skipped, timed_samples, t_timed
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # warm-up kernels must finish outside the timed window
            t_timed = time.perf_counter()
        ix = torch.from_numpy(idx).to(device)
        loss, outcome = train_step(model, x_all[ix], y_all[ix], optimizer, policy, scaler)
        losses.append(loss)
        norms.append(outcome.grad_norm)
        scales.append(outcome.scale)
        skipped += int(not outcome.stepped)
        if scheduler is not None and outcome.stepped:  # a skipped step must not advance the schedule
            scheduler.step()
        if step >= warmup:
            timed_samples += len(idx)

    memory = PeakMemory(device, model, optimizer)
    start = time.perf_counter()
    with memory:  # only the first steps: the CPU counter slows every op it sees
        for step, idx in enumerate(batches[:MEMORY_STEPS]):
            run(step, idx)
    for step, idx in enumerate(batches[MEMORY_STEPS:], start=MEMORY_STEPS):
        run(step, idx)
        if (step + 1) % per_epoch == 0 and (stop_reason := health_stop(losses, skipped, step + 1, cfg)):
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    end = time.perf_counter()
    steps = len(losses)
    loss_values = torch.stack(losses).float().cpu().numpy()
    norm_values = torch.stack(norms).float().cpu().numpy()
    epochs_run = max(1, steps // per_epoch)
    epoch_losses = tuple(float(np.nanmean(loss_values[e * per_epoch:(e + 1) * per_epoch])) for e in range(epochs_run))
    return TrainResult(
        precision=policy.name, policy=policy, spec=spec, model=model.eval(), epoch_losses=epoch_losses,
        steps=steps, timed_steps=max(steps - warmup, 0),
        samples_per_s=timed_samples / max(end - t_timed, 1e-9), peak_memory_bytes=memory.peak_bytes,
        wall_s=end - start, skipped_steps=skipped, nonfinite_losses=int((~np.isfinite(loss_values)).sum()),
        nonfinite_grads=int((~np.isfinite(norm_values)).sum()), grad_norms=tuple(norm_values.tolist()),
        loss_scales=tuple(scales), stop_reason=stop_reason,
    )
