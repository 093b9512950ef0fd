"""The device: which one to use, what it is called, and which precision modes it can run.

Kept apart from the precision policies: a policy says how tensors are cast, the device where they live.
"""
from __future__ import annotations

import torch

from pipeline.core.errors import ConfigError
from pipeline.core.modes import MODES, PRECISIONS


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":  # under torchrun each rank has set its own current CUDA device
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(spec)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a model's weights live (inputs must go there)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def check_runnable(name: str, device: torch.device) -> None:
    """Refuse a mode this device cannot run, naming what to use instead."""
    mode = MODES.get(name)
    if mode is None:
        raise ConfigError(f"config: unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
    if name == "tf32" and device.type != "cuda":
        raise ConfigError("config: tf32 is a CUDA matmul mode and does nothing on CPU; use fp32 or bf16 here")
    if mode.min_capability is None:
        return
    if device.type != "cuda":
        raise ConfigError("config: fp8 training needs a CUDA GPU of compute capability 8.9+ (Ada, Hopper); "
                          "on CPU use bf16")
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < mode.min_capability:
        raise ConfigError(f"config: fp8 needs compute capability 8.9+, this GPU has {major}.{minor}; "
                          "use bf16 (or tf32) instead")
    try:
        import torchao.float8  # noqa: F401
    except ImportError:
        raise ConfigError("config: fp8 needs torchao (`pip install torchao`); or use bf16") from None


def check_device(spec: str, precisions: tuple[str, ...]) -> torch.device:
    """The entry point's device check, after the config is read: the device exists and runs every precision."""
    device = resolve_device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"config: train.device is {spec} but no CUDA device is visible; use auto or cpu")
    for name in precisions:
        check_runnable(name, device)
    return device


def available_precisions(device: torch.device) -> tuple[str, ...]:
    """Every mode this device can run (for `mpops sweep`)."""
    out = []
    for name in PRECISIONS:
        try:
            check_runnable(name, device)
        except ConfigError:
            continue
        out.append(name)
    return tuple(out)


def serving_precision(name: str, device: torch.device, allow_fallback: bool = False) -> str:
    """The trained mode, where this device runs it; its nearest mode (fp8 -> bf16, tf32 -> fp32) only when
    the caller allows it. A model is never served in another precision than the one it was registered with
    unless someone asked for that: a refusal is a ConfigError naming the fallback."""
    try:
        check_runnable(name, device)
        return name
    except ConfigError as e:
        reason = str(e).removeprefix("config: ")
        fallback = MODES[name].serving_fallback if name in MODES else None
        if allow_fallback and fallback:
            return fallback
        raise ConfigError(f"serving: the model was trained in {name}, which this device cannot run ({reason}); "
                          + (f"its fallback {fallback} must be allowed explicitly" if fallback else
                             "there is no fallback to serve it in")) from None
