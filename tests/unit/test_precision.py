import torch
from torch import nn

from pipeline.precision import make_policy, optimizer_step

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
                    "precision.loss_scaling": "dynamic", "precision.device": "cpu"}
    assert make_policy("fp32", CPU).tags["precision.autocast_dtype"] == "none"


def _overflowing_step(policy):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = policy.make_scaler()
    before = model.weight.detach().clone()
    with policy.autocast():
        loss = model(torch.full((2, 4), 1e30)).float().sum()  # gradients overflow to inf
    stepped = optimizer_step(loss, opt, scaler)
    return stepped, before, model.weight.detach(), scaler


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
    assert optimizer_step(loss, opt, policy.make_scaler())
