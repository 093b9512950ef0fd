"""Precision policies: one small object per mode, so the training step has no precision branches.

Modelled on Lightning's Precision plugins: `convert_module()`, `convert_input()`, `autocast()`,
a scaler, and `optimizer_step()`. The modes:

    fp32       plain float32
    tf32       float32 weights, CUDA matmuls and convolutions in TF32 (CUDA only)
    bf16       float32 weights, bfloat16 autocast
    fp16       float32 weights, float16 autocast, dynamic loss scaling
    bf16-true  weights, activations and optimizer state in bfloat16 (no fp32 master copy)
    fp8        torchao float8 training of the Linear layers under bf16 autocast (CUDA cc 8.9+)
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from pipeline.errors import ConfigError

PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "bf16-true", "fp8")


@dataclass(frozen=True)
class StepOutcome:
    stepped: bool  # False: the scaler skipped optimizer.step() on inf/nan gradients
    grad_norm: torch.Tensor  # 0-dim, on device: reading it would be a sync per step
    scale: float  # the loss scale used for this step (1.0 without scaling)


@dataclass(frozen=True)
class PrecisionPolicy:
    name: str
    autocast_dtype: torch.dtype | None
    loss_scaling: bool
    device: torch.device
    param_dtype: torch.dtype = torch.float32
    tf32: bool = False
    fp8: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        stack = contextlib.ExitStack()
        if self.tf32:
            stack.enter_context(_float32_matmul_precision("high"))
        stack.enter_context(torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                                           enabled=self.autocast_dtype is not None))
        return stack

    def convert_module(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(device=self.device, dtype=self.param_dtype)
        if self.fp8:
            from torchao.float8 import convert_to_float8_training

            convert_to_float8_training(model)
        return model

    def convert_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.param_dtype) if x.is_floating_point() else x

    def make_scaler(self, init_scale: float = 2.0**16, growth_interval: int = 2000) -> torch.amp.GradScaler:
        # Disabled scalers pass losses and steps straight through; only fp16 needs dynamic scaling.
        return torch.amp.GradScaler(self.device.type, init_scale=init_scale, growth_interval=growth_interval,
                                    enabled=self.loss_scaling)

    @property
    def tags(self) -> dict[str, str]:
        return {
            "precision": self.name,
            "precision.autocast_dtype": str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else "none",
            "precision.loss_scaling": "dynamic" if self.loss_scaling else "none",
            "precision.device": device_label(self.device),
            "precision.param_dtype": str(self.param_dtype).removeprefix("torch."),
        }


@contextlib.contextmanager
def _float32_matmul_precision(level: str):
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(level)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":  # under torchrun each rank has set its own current CUDA device
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(spec)


def check_supported(name: str, device: torch.device) -> None:
    """Refuse a mode the device cannot run, naming what to use instead (called when the config is read)."""
    if name not in PRECISIONS:
        raise ConfigError(f"config: unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
    if name == "tf32" and device.type != "cuda":
        raise ConfigError("config: tf32 is a CUDA matmul mode and does nothing on CPU; use fp32 or bf16 here")
    if name == "fp8":
        if device.type != "cuda":
            raise ConfigError("config: fp8 training needs a CUDA GPU of compute capability 8.9+ (Ada, Hopper); "
                              "on CPU use bf16")
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) < (8, 9):
            raise ConfigError(f"config: fp8 needs compute capability 8.9+, this GPU has {major}.{minor}; "
                              "use bf16 (or tf32) instead")
        try:
            import torchao.float8  # noqa: F401
        except ImportError:
            raise ConfigError("config: fp8 needs torchao (`pip install torchao`); or use bf16") from None


def available_precisions(device: torch.device) -> tuple[str, ...]:
    """Every mode this device can run (for `mpops sweep`)."""
    out = []
    for name in PRECISIONS:
        try:
            check_supported(name, device)
        except ConfigError:
            continue
        out.append(name)
    return tuple(out)


def make_policy(name: str, device: torch.device) -> PrecisionPolicy:
    check_supported(name, device)
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp8": torch.bfloat16}.get(name)
    return PrecisionPolicy(name=name, autocast_dtype=autocast, loss_scaling=name == "fp16", device=device,
                           param_dtype=torch.bfloat16 if name == "bf16-true" else torch.float32,
                           tf32=name == "tf32", fp8=name == "fp8")


# A model trained in a mode the serving device lacks is served in the nearest mode it has.
SERVING_FALLBACK = {"fp8": "bf16", "tf32": "fp32"}


def serving_policy(name: str, device: torch.device) -> PrecisionPolicy:
    try:
        return make_policy(name, device)
    except ConfigError:
        return make_policy(SERVING_FALLBACK.get(name, "fp32"), device)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler) -> StepOutcome:
    """Backward, unscale, measure the gradient norm, step; the scaler decides whether the step happens."""
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)  # true gradients: the norm is comparable across precisions
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params]) if params else loss.new_zeros(())
    scale_before = scaler.get_scale() if scaler.is_enabled() else 1.0
    scaler.step(optimizer)
    scaler.update()
    # GradScaler lowers the scale exactly when it skipped optimizer.step() for non-finite grads.
    stepped = not (scaler.is_enabled() and scaler.get_scale() < scale_before)
    return StepOutcome(stepped, grad_norm.detach(), scale_before)
