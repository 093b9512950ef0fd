"""Precision policies: one small object per mode, so the training step has no precision branches.

Modelled on Lightning's Precision plugins: `autocast()`, `scaler`, `optimizer_step()`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PrecisionPolicy:
    name: str
    autocast_dtype: torch.dtype | None
    loss_scaling: bool
    device: torch.device

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    def make_scaler(self) -> torch.amp.GradScaler:
        # Disabled scalers pass losses and steps straight through; only fp16 needs dynamic scaling.
        return torch.amp.GradScaler(self.device.type, enabled=self.loss_scaling)

    @property
    def tags(self) -> dict[str, str]:
        return {
            "precision": self.name,
            "precision.autocast_dtype": str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else "none",
            "precision.loss_scaling": "dynamic" if self.loss_scaling else "none",
            "precision.device": device_label(self.device),
        }


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def make_policy(name: str, device: torch.device) -> PrecisionPolicy:
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    return PrecisionPolicy(name=name, autocast_dtype=dtypes[name], loss_scaling=name == "fp16", device=device)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> bool:
    """Backward and step; returns False when the scaler skipped the step on inf/nan gradients."""
    scaler.scale(loss).backward()
    scale_before = scaler.get_scale() if scaler.is_enabled() else 1.0
    scaler.step(optimizer)
    scaler.update()
    # GradScaler lowers the scale exactly when it skipped optimizer.step() for non-finite grads.
    return not (scaler.is_enabled() and scaler.get_scale() < scale_before)
