"""The model: an MLP over standardised features (the statistics live in the model's buffers)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    n_features: int
    n_classes: int
    hidden_size: int
    hidden_layers: int

    @property
    def flops_per_sample(self) -> int:
        """Forward multiply-adds x2, for the Linear layers (training is about 3x this)."""
        dims = [self.n_features] + [self.hidden_size] * self.hidden_layers + [self.n_classes]
        return sum(2 * a * b for a, b in zip(dims, dims[1:]))


class Standardize(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def build_model(spec: ModelSpec, x_train: np.ndarray | None = None) -> nn.Sequential:
    mean = torch.zeros(spec.n_features)
    std = torch.ones(spec.n_features)
    if x_train is not None:
        mean = torch.from_numpy(x_train.mean(axis=0)).float()
        # Constant columns (the digits' always-blank border pixels) would divide by zero.
        std = torch.from_numpy(x_train.std(axis=0)).float().clamp_min(1e-6)
    layers: list[nn.Module] = [Standardize(mean, std)]
    width = spec.n_features
    for _ in range(spec.hidden_layers):
        layers += [nn.Linear(width, spec.hidden_size), nn.ReLU()]
        width = spec.hidden_size
    layers.append(nn.Linear(width, spec.n_classes))
    return nn.Sequential(*layers)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
