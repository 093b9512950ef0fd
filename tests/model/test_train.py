import numpy as np
import pytest
import torch

from pipeline.config import TrainConfig
from pipeline.data import load_dataset, split_dataset
from pipeline.evaluate import evaluate
from pipeline.precision import make_policy
from pipeline.train import batch_order, train

CPU = torch.device("cpu")
SMALL = TrainConfig(hidden_size=64, hidden_layers=2, epochs=8, batch_size=64)


@pytest.fixture(scope="module")
def split(tmp_path_factory, digits_frame):
    path = tmp_path_factory.mktemp("d") / "digits.csv"
    digits_frame.to_csv(path, index=False)
    return split_dataset(load_dataset(path), 0.2, 0)


def test_batch_order_is_shared_and_covers_every_row():
    a, b = batch_order(100, 32, 3, seed=1), batch_order(100, 32, 3, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len(a) == 12
    assert sorted(np.concatenate(a[:4]).tolist()) == list(range(100))


def test_fp32_learns_digits_and_is_reproducible(split):
    a = train(split, SMALL, make_policy("fp32", CPU))
    b = train(split, SMALL, make_policy("fp32", CPU))
    assert a.epoch_losses == b.epoch_losses
    assert a.epoch_losses[-1] < a.epoch_losses[0] / 5
    ev = evaluate(a.model, split, make_policy("fp32", CPU))
    assert ev.accuracy > 0.93
    assert len(ev.per_class_recall) == 10 and min(ev.per_class_recall) > 0.8
    assert a.samples_per_s > 0 and a.peak_memory_bytes > 0 and a.steps == 8 * 23
    assert a.skipped_steps == 0 and a.nonfinite_losses == 0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_close_to_fp32(split, precision):
    cfg = TrainConfig(hidden_size=64, hidden_layers=2, epochs=4, batch_size=64)
    base = evaluate(train(split, cfg, make_policy("fp32", CPU)).model, split, make_policy("fp32", CPU))
    r = train(split, cfg, make_policy(precision, CPU))
    ev = evaluate(r.model, split, make_policy(precision, CPU))
    assert abs(ev.accuracy - base.accuracy) < 0.05
    assert r.nonfinite_losses == 0
    # the same initial weights and data order: the first-step loss agrees to reduced precision
    assert r.epoch_losses[0] == pytest.approx(train(split, cfg, make_policy("fp32", CPU)).epoch_losses[0], rel=0.05)
