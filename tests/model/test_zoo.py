"""The model zoo: each model learns the digits, and its FLOP estimate agrees with torch's own count."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.core.config import TrainConfig
from pipeline.core.data import load_dataset, split_dataset
from pipeline.core.errors import ConfigError
from pipeline.core.evaluate import evaluate
from pipeline.core.models import ModelSpec, build_model, count_parameters
from pipeline.core.train import train

CPU = torch.device("cpu")


@pytest.mark.parametrize("kind", ["mlp", "cnn", "transformer"])
def test_flop_estimate_matches_torch_flop_counter(kind):
    spec = ModelSpec(64, 10, 128, 2, kind)
    model = build_model(spec)
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.randn(32, 64))
    measured = counter.get_total_flops() / 32
    if kind == "transformer":
        # torch's counter sees no FLOPs in CPU scaled_dot_product_attention: add its two token-by-token
        # products (scores and weighted values) back, 2 x 2 x tokens^2 x d per layer.
        measured += spec.hidden_layers * 2 * 2 * spec.side ** 2 * spec.d_model
    assert spec.flops_per_sample == pytest.approx(measured, rel=0.02)
    if kind == "mlp":  # 64->128->128->10 with biases
        assert count_parameters(model) == 64 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10


@pytest.mark.slow
@pytest.mark.parametrize("kind, precision, floor", [("cnn", "fp32", 0.9), ("transformer", "fp32", 0.75),
                                                     ("cnn", "bf16", 0.9)])
def test_each_model_learns_the_digits(digits_csv, kind, precision, floor):
    split = split_dataset(load_dataset(digits_csv), 0.2, 0)
    cfg = TrainConfig(model=kind, hidden_size=64, hidden_layers=2, epochs=6, batch_size=64)
    r = train(split, cfg, precision, device=CPU)
    assert evaluate(r.model, split, r.policy).accuracy > floor
    assert r.spec.kind == kind and r.stop_reason is None


def test_a_non_square_feature_count_is_refused_for_image_models():
    with pytest.raises(ConfigError, match="use train.model=mlp"):
        build_model(ModelSpec(10, 3, 64, 1, "cnn"))
