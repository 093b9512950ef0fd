"""Every precision mode on CUDA; skipped where there is no GPU (bench/gpu_check.sh runs these)."""
import pytest
import torch
from torch import nn

from pipeline.core.config import TrainConfig
from pipeline.core.data import load_dataset, split_dataset
from pipeline.core.evaluate import evaluate
from pipeline.core.modes import PRECISIONS
from pipeline.core.precision import make_policy
from pipeline.core.train import train

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _supported(name: str) -> bool:
    if name != "fp8":
        return True
    try:
        import torchao.float8  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.get_device_capability() >= (8, 9)


@pytest.mark.parametrize("name, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16), ("tf32", torch.float32)])
def test_autocast_dtype_on_cuda(name, dtype):
    policy = make_policy(name, torch.device("cuda"))
    with policy.forward_context():
        assert nn.Linear(8, 2).cuda()(torch.randn(4, 8, device="cuda")).dtype == dtype
    assert policy.scaler.is_enabled() == (name == "fp16")


@pytest.mark.parametrize("name", PRECISIONS)
def test_every_mode_trains_on_cuda(name, digits_csv):
    if not _supported(name):
        pytest.skip(f"{name} is not supported on this GPU")
    split = split_dataset(load_dataset(digits_csv), 0.2, 0)
    r = train(split, TrainConfig(hidden_size=256, hidden_layers=2, epochs=5, batch_size=128), name,
              device=torch.device("cuda"))
    assert r.stop_reason is None and r.nonfinite_losses == 0 and r.device.type == "cuda"
    assert evaluate(r.model, split, r.policy).accuracy > 0.85
