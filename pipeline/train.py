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
from pipeline.precision import PrecisionPolicy, optimizer_step

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


def batch_order(n: int, batch_size: int, epochs: int, seed: int) -> list[np.ndarray]:
    """The same index batches for every precision: the comparison is only fair on the same data order."""
    rng = np.random.default_rng(seed)
    return [perm[i:i + batch_size] for _ in range(epochs) for perm in [rng.permutation(n)]
            for i in range(0, n, batch_size)]


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
               policy: PrecisionPolicy, scaler: torch.amp.GradScaler) -> tuple[torch.Tensor, bool]:
    optimizer.zero_grad(set_to_none=True)
    with policy.autocast():
        loss = nn.functional.cross_entropy(model(x), y)
    return loss.detach(), optimizer_step(loss, optimizer, scaler)


def train(split: Split, cfg: TrainConfig, policy: PrecisionPolicy) -> TrainResult:
    device = policy.device
    spec = ModelSpec(split.x_train.shape[1], len(split.classes), cfg.hidden_size, cfg.hidden_layers)
    torch.manual_seed(cfg.seed)  # identical initial weights for every precision
    model = build_model(spec, split.x_train).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = policy.make_scaler()
    x_all = torch.from_numpy(split.x_train).to(device)
    y_all = torch.from_numpy(split.y_train).to(device)
    batches = batch_order(len(y_all), cfg.batch_size, cfg.epochs, cfg.seed)
    per_epoch = len(batches) // cfg.epochs
    warmup = min(max(cfg.warmup_steps, MEMORY_STEPS), len(batches) - 1)

    model.train()
    losses: list[torch.Tensor] = []
    nonfinite = torch.zeros((), dtype=torch.int64, device=device)
    skipped, timed_samples, t_timed = 0, 0, 0.0

    def run(step: int, idx: np.ndarray) -> None:
        nonlocal skipped, timed_samples, t_timed, nonfinite
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # warm-up kernels must finish outside the timed window
            t_timed = time.perf_counter()
        ix = torch.from_numpy(idx).to(device)
        loss, stepped = train_step(model, x_all[ix], y_all[ix], optimizer, policy, scaler)
        losses.append(loss)
        nonfinite += (~torch.isfinite(loss)).long()  # stays on device: no sync per step
        skipped += int(not stepped)
        if step >= warmup:
            timed_samples += len(idx)

    memory = PeakMemory(device, model, optimizer)
    start = time.perf_counter()
    with memory:  # only the first steps: the CPU counter slows every op it sees
        for step, idx in enumerate(batches[:MEMORY_STEPS]):
            run(step, idx)
    for step, idx in enumerate(batches[MEMORY_STEPS:], start=MEMORY_STEPS):
        run(step, idx)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    end = time.perf_counter()
    loss_values = torch.stack(losses).float().cpu().numpy()
    epoch_losses = tuple(float(np.nanmean(loss_values[e * per_epoch:(e + 1) * per_epoch])) for e in range(cfg.epochs))
    return TrainResult(
        precision=policy.name, policy=policy, spec=spec, model=model.eval(), epoch_losses=epoch_losses,
        steps=len(batches), timed_steps=len(batches) - warmup,
        samples_per_s=timed_samples / max(end - t_timed, 1e-9), peak_memory_bytes=memory.peak_bytes,
        wall_s=end - start, skipped_steps=skipped, nonfinite_losses=int(nonfinite.item()),
    )
