"""The image example's own CNN: flat C*H*W rows in, one logit per class out, trainable in bf16 autocast."""
from __future__ import annotations

import importlib.util

import torch

from pipeline.core.factory import InputSpec
from tests.conftest import ROOT


def _factory():
    spec = importlib.util.spec_from_file_location("digits_images_model", ROOT / "examples/digits-images/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build


def test_digits_images_cnn_unflattens_chw_rows():
    model = _factory()(InputSpec(3 * 32 * 32, 3, 32, 32), 10, {"channels": 8})
    x = torch.rand(4, 3 * 32 * 32)
    assert model(x).shape == (4, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
