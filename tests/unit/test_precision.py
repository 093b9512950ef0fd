import math

import pytest
import torch
from torch import nn

from pipeline.core.config import TrainConfig
from pipeline.core.data import Split
from pipeline.core.device import available_precisions, check_runnable, serving_precision
from pipeline.core.errors import ConfigError
from pipeline.core.modes import MODES
from pipeline.core.precision import make_policy
from pipeline.core.train import train

CPU = torch.device("cpu")


def test_autocast_dtype_inside_context():
    x = torch.randn(4, 8)
    lin = nn.Linear(8, 2)
    for name, dtype in [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]:
        policy = make_policy(name, CPU)
        with policy.forward_context():
            out = lin(x)
            assert out.dtype == dtype, name
        assert policy.convert_output(out).dtype == torch.float32  # outputs leave the policy in float32


def test_the_policy_owns_a_scaler_and_only_fp16_scales():
    assert make_policy("fp16", CPU).scaler.is_enabled()
    assert not make_policy("bf16", CPU).scaler.is_enabled()
    assert not make_policy("fp32", CPU).scaler.is_enabled()
    assert make_policy("fp16", CPU, init_scale=1024.0).scaler.get_scale() == 1024.0


def test_mode_tags_match_the_registry_contract():
    assert MODES["fp16"].tags == {"precision": "fp16", "precision.autocast_dtype": "float16",
                                  "precision.loss_scaling": "dynamic", "precision.param_dtype": "float32"}
    assert MODES["fp32"].tags["precision.autocast_dtype"] == "none"
    assert MODES["bf16-true"].tags["precision.param_dtype"] == "bfloat16"


def _overflowing_step(policy):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    with policy.forward_context():
        loss = model(torch.full((2, 4), 1e30)).float().sum()  # gradients overflow to inf
    outcome = policy.optimizer_step(loss, opt)
    return outcome.stepped, before, model.weight.detach()


def test_fp16_overflow_is_skipped_and_scale_drops():
    policy = make_policy("fp16", CPU)
    stepped, before, after = _overflowing_step(policy)
    assert not stepped
    assert torch.equal(before, after)  # the optimizer did not apply inf gradients
    assert policy.scaler.get_scale() < 65536.0


def test_normal_step_is_not_skipped():
    policy = make_policy("fp16", CPU)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with policy.forward_context():
        # x 65536 (the initial scale) every gradient stays below the fp16 max, 65504
        loss = model(torch.randn(2, 4) * 0.01).float().mean() * 0.5
    outcome = policy.optimizer_step(loss, opt)
    assert outcome.stepped and outcome.scale == 65536.0
    assert 0 < outcome.grad_norm.item() < 1  # measured after unscaling: the true gradient norm


def test_bf16_true_keeps_weights_and_activations_in_bf16():
    policy = make_policy("bf16-true", CPU)
    model = policy.convert_module(nn.Linear(8, 2))
    assert model.weight.dtype == torch.bfloat16
    with policy.forward_context():
        assert model(policy.convert_input(torch.randn(4, 8))).dtype == torch.bfloat16
    assert not policy.scaler.is_enabled()


@pytest.mark.parametrize("name, instead", [("tf32", "use fp32 or bf16"), ("fp8", "on CPU use bf16")])
def test_cuda_only_modes_are_refused_on_cpu_naming_the_alternative(name, instead):
    with pytest.raises(ConfigError, match=instead):
        check_runnable(name, CPU)
    assert name not in available_precisions(CPU)
    assert serving_precision(name, CPU) == {"tf32": "fp32", "fp8": "bf16"}[name]  # a registered model still serves


def _tiny_split(n: int = 64) -> Split:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g).numpy()
    y = (x[:, 0] > 0).astype("int64")
    return Split(x, y, x[:8], y[:8], (0, 1), ("a", "b", "c", "d"))


def test_the_scheduler_steps_only_when_the_optimizer_did():
    """Driven through train(): a planted 2**24 loss scale makes fp16 skip its first steps for overflow;
    the cosine schedule then moves only on the steps that happened."""
    cfg = TrainConfig(hidden_size=8, hidden_layers=1, epochs=4, batch_size=16, scheduler="cosine",
                      init_scale=2.0**24, max_skipped_share=1.0, warmup_steps=0, checkpoint_every=0)
    r = train(_tiny_split(), cfg, "fp16", device=CPU)
    assert r.steps == 16 and 1 <= r.skipped_steps < r.steps  # the scale halves until it fits, then steps
    stepped = r.steps - r.skipped_steps
    # CosineAnnealingLR over T_max = 16 steps, advanced once per real step from lr 3e-3
    expected = 3e-3 * (1 + math.cos(math.pi * stepped / 16)) / 2
    assert r.final_lr == pytest.approx(expected, rel=1e-6)
