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
    fallback = {"tf32": "fp32", "fp8": "bf16"}[name]
    # A registered model is served in another precision only when the caller says so.
    with pytest.raises(ConfigError, match=f"trained in {name}.*its fallback {fallback} must be allowed explicitly"):
        serving_precision(name, CPU)
    assert serving_precision(name, CPU, allow_fallback=True) == fallback
    assert serving_precision("bf16", CPU) == "bf16"


class _Flags(torch.autograd.Function):
    """Identity that records the TF32 flags in force when autograd runs its forward and its backward."""

    seen: list = []

    @staticmethod
    def forward(ctx, x):
        _Flags.seen.append(("forward", torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        _Flags.seen.append(("backward", torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return grad


@pytest.mark.parametrize("name, tf32", [("fp32", False), ("bf16", False), ("fp16", False), ("tf32", True)])
def test_tf32_is_on_exactly_when_asked_for_in_forward_and_backward(name, tf32):
    """PyTorch leaves cuDNN's TF32 on by default: an fp32 convolution would then run in TF32 on Ampere+."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    matmul.allow_tf32 = cudnn.allow_tf32 = not tf32  # the opposite of what the policy must set
    try:
        policy, model = make_policy(name, CPU), nn.Linear(4, 2)
        _Flags.seen = []
        with policy.forward_context():
            loss = model(_Flags.apply(torch.randn(3, 4, requires_grad=True))).float().sum()
        policy.optimizer_step(loss, torch.optim.SGD(model.parameters(), lr=0.1))
        assert _Flags.seen == [("forward", tf32, tf32), ("backward", tf32, tf32)]
        assert (matmul.allow_tf32, cudnn.allow_tf32) == (not tf32, not tf32)  # restored: scoped to the policy
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def test_fp8_converts_only_linear_layers_with_dimensions_divisible_by_16():
    """torchao's module filter, decided without torchao: the 10-class heads stay in bf16."""
    from pipeline.core.models import ModelSpec, build_model
    from pipeline.core.precision import fp8_layers

    assert fp8_layers(build_model(ModelSpec(64, 10, 64, 1, "mlp"))) == ["1"]  # 64->64; the 64->10 head is not
    assert fp8_layers(build_model(ModelSpec(64, 10, 64, 1, "cnn"))) == ["8"]
    assert fp8_layers(build_model(ModelSpec(64, 10, 64, 1, "transformer"))) == [
        "1.encoder.layers.0.linear1", "1.encoder.layers.0.linear2"]  # not the 8->16 embedding, out_proj or head
    assert fp8_layers(build_model(ModelSpec(60, 10, 40, 2, "mlp"))) == []
    with pytest.raises(ConfigError, match="no Linear layer whose in and out features are multiples of 16"):
        make_policy("fp8", CPU).convert_module(build_model(ModelSpec(60, 10, 40, 2, "mlp")))


def test_fp8_batches_are_cut_to_multiples_of_16_in_the_shared_order():
    from pipeline.core.train import batch_order

    plain, fp8 = batch_order(1000, 100, 2, seed=3), batch_order(1000, 100, 2, seed=3, multiple=16)
    assert [len(b) for b in fp8] == [96] * 20
    assert all((a[:96] == b).all() for a, b in zip(plain, fp8))  # the same rows in the same order, cut short
    assert [len(b) for b in batch_order(1000, 512, 1, seed=0, multiple=16)] == [512, 480]
    assert batch_order(10, 8, 1, seed=0, multiple=16) == []


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
