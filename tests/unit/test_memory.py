import torch
from torch import nn

from pipeline.core.memory import PeakMemory

CPU = torch.device("cpu")


def _peak(batch, dtype=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.AdamW(model.parameters())
    x, y = torch.randn(batch, 64), torch.randint(0, 10, (batch,))
    with PeakMemory(CPU, model, opt) as pm:
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return pm.peak_bytes


def test_peak_counts_weights_grads_and_optimizer_state():
    params = (64 * 256 + 256 + 256 * 10 + 10) * 4
    # weights + grads + two AdamW moments at least
    assert _peak(1) >= 4 * params


def test_peak_grows_with_activations():
    # (4096, 256) fp32 activations are 4 MiB each: a bigger batch must show.
    assert _peak(4096) - _peak(16) > 4 * 2**20


def test_bf16_activations_are_smaller():
    assert _peak(4096, torch.bfloat16) < _peak(4096)
