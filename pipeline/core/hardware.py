"""Which reduced precisions have a hardware path on this device, in words a user can check.

The same pipeline keeps bf16 on one CPU and drops it on another; the end-of-run summary names the CPU
flags (or GPU and compute capability) behind that, so the decision can be traced to the machine.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import torch

# The CPU flags that decide reduced-precision matmul speed (Linux /proc/cpuinfo names).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
FP16_FLAGS = ("avx512_fp16", "amx_fp16")
PRECISION_FLAGS = BF16_FLAGS + FP16_FLAGS


@dataclass(frozen=True)
class Hardware:
    kind: str  # "cpu" or "cuda"
    name: str  # CPU model or GPU name
    flags: tuple[str, ...] | None  # the PRECISION_FLAGS present; None where the OS does not say
    capability: tuple[int, int] | None = None  # CUDA compute capability


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_hardware(cpuinfo: str | None = None) -> Hardware:
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    lines = text.splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    flag_line = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), None)
    flags = None if flag_line is None else tuple(f for f in PRECISION_FLAGS if f in flag_line)
    return Hardware("cpu", model or platform.processor() or "unknown CPU", flags)


def detect(device: torch.device) -> Hardware:
    if device.type == "cuda":
        return Hardware("cuda", torch.cuda.get_device_name(device), None, torch.cuda.get_device_capability(device))
    return cpu_hardware()


def _cuda_path(hw: Hardware, precision: str) -> str:
    cc = hw.capability or (0, 0)
    need = {"bf16": (8, 0), "bf16-true": (8, 0), "tf32": (8, 0), "fp16": (7, 0), "fp8": (8, 9)}.get(precision)
    where = f"{hw.name}, compute capability {cc[0]}.{cc[1]}"
    if need is None:
        return where
    has = "has" if cc >= need else "lacks"
    return f"{where}, {has} tensor cores for {precision} (needs {need[0]}.{need[1]})"


def precision_path(hw: Hardware, precision: str) -> str:
    """One clause: whether `precision`'s matmuls run in hardware here, and the flags or GPU that say so."""
    if hw.kind == "cuda":
        return _cuda_path(hw, precision)
    family = {"bf16": BF16_FLAGS, "bf16-true": BF16_FLAGS, "fp16": FP16_FLAGS}.get(precision)
    if family is None:
        return f"{precision} runs in fp32 on this CPU"
    names = "/".join(family)
    if hw.flags is None:
        return f"this CPU's flags are unknown here, so whether {names} exist is not known"
    present = [f for f in family if f in hw.flags]
    if present:
        return f"this CPU has {', '.join(present)}: {precision} matmuls run in hardware"
    return f"this CPU has no {names}: {precision} matmuls run in software"


def hardware_line(hw: Hardware, precisions: tuple[str, ...]) -> str:
    """`CPU Intel(R) Xeon(R) ...: this CPU has avx512_bf16: bf16 matmuls run in hardware; ...`"""
    reduced = [p for p in precisions if p != "fp32"]
    clauses = "; ".join(f"{p}: {precision_path(hw, p)}" for p in reduced) or "fp32 only"
    return f"{hw.kind.upper()} {hw.name} ({clauses})"
