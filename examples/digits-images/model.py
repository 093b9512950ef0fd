"""The example's own CNN: mpops calls build(input_spec, n_classes, params) and trains what it returns.

mpops hands every model flat rows of C*H*W pixels in C,H,W order (scaled to [0, 1]); the network
unflattens them to (C, H, W) itself. `params` is train.model_params from the example's config.
"""
from __future__ import annotations

from torch import nn


def build(input_spec, n_classes: int, params: dict) -> nn.Module:
    c, h, w = input_spec.channels, input_spec.height, input_spec.width
    width = int(params.get("channels", 32))
    return nn.Sequential(
        nn.Unflatten(1, (c, h, w)),
        nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * width * (h // 4) * (w // 4), 128), nn.ReLU(), nn.Linear(128, n_classes),
    )
