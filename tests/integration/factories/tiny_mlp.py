"""A model factory of a user's own, outside the package: what `train.model=path/to/file.py:build` names."""
from torch import nn


def build(input_spec, n_classes, params):
    width = int(params.get("width", 32))
    return nn.Sequential(nn.Linear(input_spec.n_features, width), nn.ReLU(), nn.Linear(width, n_classes))


def raises(input_spec, n_classes, params):
    raise RuntimeError("no GPU of the kind this model wants")


def not_a_module(input_spec, n_classes, params):
    return "a model"


def wrong_shape(input_spec, n_classes, params):
    return nn.Linear(input_spec.n_features, n_classes + 1)
