"""The precision modes, as plain data: the one list every part of mpops names precisions from.

Reading it needs no torch, so a config can be checked without touching a device. What each mode
does to tensors lives in pipeline.core.precision; what a device can run, in pipeline.core.device.

    fp32       plain float32
    tf32       float32 weights, CUDA matmuls and convolutions in TF32 (CUDA only)
    bf16       float32 weights, bfloat16 autocast
    fp16       float32 weights, float16 autocast, dynamic loss scaling
    bf16-true  weights, activations and optimizer state in bfloat16 (no fp32 master copy)
    fp8        torchao float8 training of the Linear layers under bf16 autocast (CUDA cc 8.9+)
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    name: str
    autocast: str | None = None  # torch dtype name of the autocast region; None: no autocast
    loss_scaling: bool = False
    params: str = "float32"  # dtype of weights, activations and optimizer state
    cuda_only: bool = False
    min_capability: tuple[int, int] | None = None  # CUDA compute capability it needs
    serving_fallback: str | None = None  # the nearest mode to serve in where this one cannot run
    # Rows of every batch that takes a gradient must be a multiple of this (per rank): fp8's weight gradient
    # is a matmul over the batch, and fp8 matmuls need every dimension they reduce over divisible by 16.
    row_multiple: int = 1

    @property
    def tags(self) -> dict[str, str]:
        """The precision tags of a registered version (the device tag comes from pipeline.core.device)."""
        return {"precision": self.name, "precision.autocast_dtype": self.autocast or "none",
                "precision.loss_scaling": "dynamic" if self.loss_scaling else "none",
                "precision.param_dtype": self.params}


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("fp32"),
    Mode("tf32", cuda_only=True, serving_fallback="fp32"),
    Mode("bf16", autocast="bfloat16"),
    Mode("fp16", autocast="float16", loss_scaling=True),
    Mode("bf16-true", params="bfloat16"),
    Mode("fp8", autocast="bfloat16", cuda_only=True, min_capability=(8, 9), serving_fallback="bf16",
         row_multiple=16),
)}
PRECISIONS: tuple[str, ...] = tuple(MODES)
BASELINE = "fp32"  # every candidate is gated against it
DEFAULT_CANDIDATES: tuple[str, ...] = ("fp32", "bf16", "fp16")
