"""The example's own model, named by mpops.yaml as `model.py:build`: an MLP with layer norm and dropout.

mpops calls `build(input_spec, n_classes, params)` with `params` = `train.model_params`; the rows
arrive standardised, as float32 (batch, input_spec.n_features); the module returns logits.
"""
from torch import nn


def build(input_spec, n_classes, params):
    width, depth = int(params.get("width", 128)), int(params.get("depth", 2))
    dropout = float(params.get("dropout", 0.1))
    layers, size = [], input_spec.n_features
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.LayerNorm(width), nn.GELU(), nn.Dropout(dropout)]
        size = width
    return nn.Sequential(*layers, nn.Linear(size, n_classes))
