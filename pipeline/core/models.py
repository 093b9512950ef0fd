"""The model zoo: an MLP (tabular), a CNN (images; the digits as 8x8) and a small transformer encoder.

Each takes the flat feature vector, standardised by statistics kept in the model's buffers, and
reports its parameter count and estimated forward FLOPs per sample, so throughput can be read as
model FLOP utilisation against the measured matmul peak (bench/matmul_peak.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.core.config import MODEL_ZOO
from pipeline.core.errors import ConfigError
from pipeline.core.factory import InputSpec, build_user_module, count_flops, is_zoo


@dataclass(frozen=True)
class ModelSpec:
    n_features: int
    n_classes: int
    hidden_size: int
    hidden_layers: int
    kind: str = "mlp"  # a zoo name, or a factory reference (pipeline.core.factory)
    params: dict = field(default_factory=dict)  # train.model_params, for a factory
    image: tuple[int, int, int] | None = None  # (channels, height, width) of image data
    flops: int = 0  # a factory model's forward FLOPs per sample, counted by torch

    def __post_init__(self) -> None:
        if self.image is not None:  # read back from JSON as a list
            object.__setattr__(self, "image", tuple(self.image))

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(self.n_features, *(self.image or ()))

    @property
    def side(self) -> int:
        """Image side for cnn/transformer: 64 features are an 8x8 image of 8 rows (tokens) of 8 pixels."""
        side = math.isqrt(self.n_features)
        if side * side != self.n_features:
            raise ConfigError(f"train.model={self.kind} reads the {self.n_features} features as a square image; "
                              "they are not a square number: use train.model=mlp")
        return side

    @property
    def channels(self) -> int:
        return max(8, self.hidden_size // 8)

    @property
    def d_model(self) -> int:
        return max(16, self.hidden_size // 8)

    @property
    def flops_per_sample(self) -> int:
        """Forward multiply-adds x2 of the matmuls and convolutions (training is about 3x this)."""
        if not is_zoo(self.kind):
            return self.flops
        if self.kind == "cnn":
            s, c = self.side, self.channels
            pooled = (s // 2) ** 2 * 2 * c
            return 2 * (1 * c * 9 * s * s + c * 2 * c * 9 * s * s + pooled * self.hidden_size
                        + self.hidden_size * self.n_classes)
        if self.kind == "transformer":
            t, d = self.side, self.d_model
            per_layer = 2 * t * d * 3 * d + 2 * 2 * t * t * d + 2 * t * d * d + 2 * 2 * t * d * 4 * d
            return 2 * t * t * d + self.hidden_layers * per_layer + 2 * d * self.n_classes
        dims = [self.n_features] + [self.hidden_size] * self.hidden_layers + [self.n_classes]
        return sum(2 * a * b for a, b in zip(dims, dims[1:]))


class Standardize(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Image(nn.Module):
    """(batch, side*side) -> (batch, 1, side, side)"""

    def __init__(self, side: int) -> None:
        super().__init__()
        self.side = side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(-1, 1, self.side, self.side)


class Encoder(nn.Module):
    """Rows of the image as tokens: (batch, side*side) -> (batch, side tokens, d) -> mean-pooled logits."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        t, d = spec.side, spec.d_model
        self.side = t
        self.embed = nn.Linear(t, d)
        self.position = nn.Parameter(torch.zeros(1, t, d))
        layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=4 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, spec.hidden_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, spec.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.view(-1, self.side, self.side)) + self.position
        return self.head(self.encoder(tokens).mean(dim=1))


def _layers(spec: ModelSpec) -> list[nn.Module]:
    if spec.kind == "cnn":
        s, c = spec.side, spec.channels
        return [Image(s), nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(),
                nn.MaxPool2d(2), nn.Flatten(), nn.Linear((s // 2) ** 2 * 2 * c, spec.hidden_size), nn.ReLU(),
                nn.Linear(spec.hidden_size, spec.n_classes)]
    if spec.kind == "transformer":
        return [Encoder(spec)]
    if spec.kind != "mlp":
        raise ConfigError(f"train.model must be one of {', '.join(MODEL_ZOO)}, got {spec.kind!r}")
    layers: list[nn.Module] = []
    width = spec.n_features
    for _ in range(spec.hidden_layers):
        layers += [nn.Linear(width, spec.hidden_size), nn.ReLU()]
        width = spec.hidden_size
    return layers + [nn.Linear(width, spec.n_classes)]


def build_model(spec: ModelSpec, x_train: np.ndarray | None = None, base: Path | None = None) -> nn.Sequential:
    """The model, behind the standardisation layer; a factory's relative file reference is read from `base`."""
    mean = torch.zeros(spec.n_features)
    std = torch.ones(spec.n_features)
    if x_train is not None:
        mean = torch.from_numpy(x_train.mean(axis=0)).float()
        # Constant columns (the digits' always-blank border pixels) would divide by zero.
        std = torch.from_numpy(x_train.std(axis=0)).float().clamp_min(1e-6)
    if is_zoo(spec.kind):
        return nn.Sequential(Standardize(mean, std), *_layers(spec))
    return nn.Sequential(Standardize(mean, std),
                         build_user_module(spec.kind, spec.input_spec, spec.n_classes, spec.params, base))


def with_flops(spec: ModelSpec, model: nn.Module) -> ModelSpec:
    """A factory model's spec with its FLOPs per sample, which only a forward pass can tell."""
    if is_zoo(spec.kind):
        return spec
    return replace(spec, flops=count_flops(model, spec.n_features))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
