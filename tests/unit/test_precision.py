import pytest
import torch
from torch import nn

from pipeline.errors import ConfigError
from pipeline.precision import make_policy, optimizer_step, serving_policy

CPU = torch.device("cpu")


def test_autocast_dtype_inside_context():
    x = torch.randn(4, 8)
    lin = nn.Linear(8, 2)
    for name, dtype in [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]:
        with make_policy(name, CPU).autocast():
            assert lin(x).dtype == dtype, name


def test_scaler_only_for_fp16():
    assert make_policy("fp16", CPU).make_scaler().is_enabled()
    assert not make_policy("bf16", CPU).make_scaler().is_enabled()
    assert not make_policy("fp32", CPU).make_scaler().is_enabled()


def test_tags_match_design():
    tags = make_policy("fp16", CPU).tags
    assert tags == {"precision": "fp16", "precision.autocast_dtype": "float16",
                    "precision.loss_scaling": "dynamic", "precision.device": "cpu",
                    "precision.param_dtype": "float32"}
    assert make_policy("fp32", CPU).tags["precision.autocast_dtype"] == "none"


def _overflowing_step(policy):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = policy.make_scaler()
    before = model.weight.detach().clone()
    with policy.autocast():
        loss = model(torch.full((2, 4), 1e30)).float().sum()  # gradients overflow to inf
    outcome = optimizer_step(loss, opt, scaler)
    return outcome.stepped, before, model.weight.detach(), scaler


def test_fp16_overflow_is_skipped_and_scale_drops():
    stepped, before, after, scaler = _overflowing_step(make_policy("fp16", CPU))
    assert not stepped
    assert torch.equal(before, after)  # the optimizer did not apply inf gradients
    assert scaler.get_scale() < 65536.0


def test_normal_step_is_not_skipped():
    policy = make_policy("fp16", CPU)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with policy.autocast():
        # x 65536 (the initial scale) every gradient stays below the fp16 max, 65504
        loss = model(torch.randn(2, 4) * 0.01).float().mean() * 0.5
    outcome = optimizer_step(loss, opt, policy.make_scaler())
    assert outcome.stepped and outcome.scale == 65536.0
    assert 0 < outcome.grad_norm.item() < 1  # measured after unscaling: the true gradient norm


def test_bf16_true_keeps_weights_and_activations_in_bf16():
    policy = make_policy("bf16-true", CPU)
    model = policy.convert_module(nn.Linear(8, 2))
    assert model.weight.dtype == torch.bfloat16
    with policy.autocast():
        assert model(policy.convert_input(torch.randn(4, 8))).dtype == torch.bfloat16
    assert not policy.make_scaler().is_enabled()


@pytest.mark.parametrize("name, instead", [("tf32", "use fp32 or bf16"), ("fp8", "on CPU use bf16")])
def test_cuda_only_modes_are_refused_on_cpu_naming_the_alternative(name, instead):
    with pytest.raises(ConfigError, match=instead):
        make_policy(name, CPU)
    assert serving_policy(name, CPU).name in ("fp32", "bf16")  # a registered model still serves here


def test_scheduler_does_not_advance_on_a_skipped_step():
    from pipeline.config import TrainConfig
    from pipeline.train import make_scheduler

    policy = make_policy("fp16", CPU)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = make_scheduler(opt, TrainConfig(scheduler="cosine"), total_steps=10)
    scaler = policy.make_scaler()
    for x in (torch.full((2, 4), 1e30), torch.randn(2, 4) * 0.01):  # overflow, then a normal step
        opt.zero_grad()
        with policy.autocast():
            loss = model(x).float().mean()
        outcome = optimizer_step(loss, opt, scaler)
        if outcome.stepped:
            sched.step()
    assert sched.last_epoch == 1  # one real step, one skipped
