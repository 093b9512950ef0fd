"""Precision policies: one small object per mode, so the training step has no precision branches.

Modelled on Lightning's precision plugins: the policy owns its loss scaler and the conversions of
the module, the input and the output, and its forward context (autocast). Where tensors live is
the device's business (pipeline.core.device); the modes themselves are listed in pipeline.core.modes.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from pipeline.core.errors import ConfigError
from pipeline.core.modes import MODES, Mode


@dataclass(frozen=True)
class StepOutcome:
    stepped: bool  # False: the scaler skipped optimizer.step() on inf/nan gradients
    grad_norm: torch.Tensor  # 0-dim, on device: reading it would be a sync per step
    scale: float  # the loss scale used for this step (1.0 without scaling)


class PrecisionPolicy:
    def __init__(self, mode: Mode, device_type: str = "cpu", init_scale: float = 2.0**16,
                 growth_interval: int = 2000) -> None:
        self.mode, self.name, self.device_type = mode, mode.name, device_type
        self.autocast_dtype = getattr(torch, mode.autocast) if mode.autocast else None
        self.param_dtype = getattr(torch, mode.params)
        # A disabled scaler passes losses and steps straight through; only fp16 needs dynamic scaling.
        self.scaler = torch.amp.GradScaler(device_type, init_scale=init_scale, growth_interval=growth_interval,
                                           enabled=mode.loss_scaling)

    @property
    def loss_scaling(self) -> bool:
        return self.mode.loss_scaling

    def numerics(self) -> contextlib.AbstractContextManager:
        """TF32 for matmuls and cuDNN convolutions exactly when tf32 was asked for: fp32 means IEEE fp32, although
        PyTorch leaves cuDNN's TF32 on by default. Scoped, not set once: the flags are process-wide, and a tf32
        training must not leak into a later fp32 evaluation. The forward context, the backward pass of
        optimizer_step and any other gradient the caller takes (FGSM) run inside it."""
        return _tf32(self.name == "tf32")

    def forward_context(self) -> contextlib.AbstractContextManager:
        stack = contextlib.ExitStack()
        stack.enter_context(self.numerics())
        stack.enter_context(torch.autocast(self.device_type, dtype=self.autocast_dtype or torch.float32,
                                           enabled=self.autocast_dtype is not None))
        return stack

    def convert_module(self, module: torch.nn.Module) -> torch.nn.Module:
        module = module.to(dtype=self.param_dtype)
        if self.name == "fp8":
            if not fp8_layers(module):
                raise ConfigError("config: fp8 found no Linear layer whose in and out features are multiples of "
                                  f"{FP8_MULTIPLE}, so nothing would run in fp8; raise train.hidden_size or use bf16")
            from torchao.float8 import convert_to_float8_training

            convert_to_float8_training(module, module_filter_fn=fp8_eligible)
        return module

    def convert_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.param_dtype) if x.is_floating_point() else x

    def convert_output(self, y: torch.Tensor) -> torch.Tensor:
        """Outputs leave the policy in float32: losses, softmax and comparisons are never reduced-precision."""
        return y.float()

    def optimizer_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> StepOutcome:
        """Backward, unscale, measure the gradient norm, step; the scaler decides whether the step happens."""
        scaler = self.scaler
        with self.numerics():
            scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # true gradients: the norm is comparable across precisions
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm(grads) if grads else loss.new_zeros(())
        scale_before = scaler.get_scale() if scaler.is_enabled() else 1.0
        scaler.step(optimizer)
        scaler.update()
        # GradScaler lowers the scale exactly when it skipped optimizer.step() for non-finite grads.
        stepped = not (scaler.is_enabled() and scaler.get_scale() < scale_before)
        return StepOutcome(stepped, grad_norm.detach(), scale_before)

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.scaler.load_state_dict(state)


@contextlib.contextmanager
def _tf32(enabled: bool):
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = matmul.allow_tf32, cudnn.allow_tf32
    matmul.allow_tf32 = cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = before


FP8_MULTIPLE = 16


def fp8_eligible(module: torch.nn.Module, fqn: str = "") -> bool:
    """torchao's module_filter_fn, as its own examples write it: fp8 matmuls need both dimensions of the weight
    divisible by 16, so the 10-class head stays in bf16. Attention's out_proj is skipped too: attention reads its
    weight directly and never calls it, so a float8 version would change nothing."""
    return (isinstance(module, torch.nn.Linear)
            and not isinstance(module, torch.nn.modules.linear.NonDynamicallyQuantizableLinear)
            and module.in_features % FP8_MULTIPLE == 0 and module.out_features % FP8_MULTIPLE == 0)


def fp8_layers(model: torch.nn.Module) -> list[str]:
    """The names of the layers fp8 training converts (computed without torchao)."""
    return [name for name, m in model.named_modules() if fp8_eligible(m, name)]


def make_policy(name: str, device: torch.device | str = "cpu", init_scale: float = 2.0**16,
                growth_interval: int = 2000) -> PrecisionPolicy:
    device_type = torch.device(device).type
    return PrecisionPolicy(MODES[name], device_type, init_scale, growth_interval)
