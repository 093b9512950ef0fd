import numpy as np
import pytest
import torch

from pipeline.core.config import TrainConfig
from pipeline.core.data import load_dataset, split_dataset
from pipeline.core.evaluate import evaluate
from pipeline.core.train import batch_order, train

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
    a = train(split, SMALL, "fp32", device=CPU)
    b = train(split, SMALL, "fp32", device=CPU)
    assert a.epoch_losses == b.epoch_losses
    assert a.epoch_losses[-1] < a.epoch_losses[0] / 5
    ev = evaluate(a.model, split, a.policy)
    assert ev.accuracy > 0.93
    assert len(ev.per_class_recall) == 10 and min(ev.per_class_recall) > 0.8
    assert a.steps == 8 * 23 and a.timed_steps == a.steps - SMALL.warmup_steps
    # throughput is over the timed steps only, so it is at least their samples over the whole wall time
    timed = sum(len(b) for b in batch_order(len(split.y_train), 64, 8, SMALL.seed)[SMALL.warmup_steps:])
    assert a.samples_per_s * a.wall_s >= timed
    # peak tensor memory holds at least weights, gradients and Adam's two moments
    param_bytes = sum(p.numel() * p.element_size() for p in a.model.parameters())
    assert a.peak_memory_bytes >= 4 * param_bytes
    assert a.skipped_steps == 0 and a.nonfinite_losses == 0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_close_to_fp32(split, precision):
    cfg = TrainConfig(hidden_size=64, hidden_layers=2, epochs=4, batch_size=64)
    fp32 = train(split, cfg, "fp32", device=CPU)
    base = evaluate(fp32.model, split, fp32.policy)
    r = train(split, cfg, precision, device=CPU)
    ev = evaluate(r.model, split, r.policy)
    assert abs(ev.accuracy - base.accuracy) < 0.05
    assert r.nonfinite_losses == 0
    # the same initial weights and data order: the first-step loss agrees to reduced precision
    assert r.epoch_losses[0] == pytest.approx(fp32.epoch_losses[0], rel=0.05)


def test_planted_fp16_overflow_skips_steps_then_recovers(split):
    """A loss scale of 2**24 overflows fp16 gradients: the scaler skips and halves until it fits."""
    cfg = TrainConfig(hidden_size=64, hidden_layers=2, epochs=2, batch_size=64, init_scale=2.0**24)
    r = train(split, cfg, "fp16", device=CPU)
    assert r.stop_reason is None and r.steps == 2 * 23
    assert 1 <= r.skipped_steps <= 12 and r.nonfinite_grads == r.skipped_steps
    assert r.loss_scales[0] == 2.0**24 and r.loss_scales[-1] < 2.0**24
    assert all(b <= a for a, b in zip(r.loss_scales, r.loss_scales[1:]))  # growth_interval 2000: never grows here
    assert r.nonfinite_losses == 0 and np.isfinite(r.epoch_losses).all()


def test_persistent_overflow_stops_early_with_a_reason(split):
    cfg = TrainConfig(hidden_size=64, hidden_layers=2, epochs=5, batch_size=64, init_scale=2.0**100,
                      max_skipped_share=0.5)
    r = train(split, cfg, "fp16", device=CPU)
    assert r.steps == 23  # stopped after the first epoch
    assert r.stop_reason.startswith("23 of 23 optimizer steps skipped for overflow")


def test_non_finite_loss_stops_early(split):
    cfg = TrainConfig(hidden_size=64, hidden_layers=2, epochs=5, batch_size=64, lr=1e30)
    r = train(split, cfg, "fp32", device=CPU)
    assert r.steps == 23 and r.nonfinite_losses > 0
    assert r.stop_reason.startswith("non-finite loss in")


def test_bf16_true_trains(split):
    cfg = TrainConfig(hidden_size=64, hidden_layers=2, epochs=4, batch_size=64)
    r = train(split, cfg, "bf16-true", device=CPU)
    assert next(r.model.parameters()).dtype == torch.bfloat16
    assert evaluate(r.model, split, r.policy).accuracy > 0.85
    assert len(r.grad_norms) == r.steps and all(np.isfinite(r.grad_norms))


def test_progress_reports_each_epoch_with_its_loss_and_plain_lines_for_ci(split, capsys):
    from pipeline.render import progress

    cfg = TrainConfig(hidden_size=32, hidden_layers=1, epochs=3, batch_size=128, checkpoint_every=0)
    seen = []
    r = train(split, cfg, "fp32", on_epoch=seen.append, device=CPU)
    # epoch 1 is reported too, though its first steps ran under the memory counter
    assert [s.epoch for s in seen] == [1, 2, 3] and seen[-1].step == r.steps
    assert [round(s.loss, 5) for s in seen] == [round(v, 5) for v in r.epoch_losses]
    assert [s.step for s in seen] == [12, 24, 36] and all(s.steps == 36 for s in seen)  # 1437 rows, batch 128
    assert progress.setup_progress("auto") == "plain"  # pytest's stdout is not a terminal
    with progress.Tracker("bf16", cfg.epochs) as on_epoch:
        train(split, cfg, "bf16", on_epoch=on_epoch, device=CPU)
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[bf16]")]
    assert len(lines) == 3 and lines[-1].startswith("[bf16] epoch 3/3") and "samples/s" in lines[-1]
    assert progress.setup_progress(quiet=True) == "quiet"
    with progress.Tracker("fp32", cfg.epochs) as on_epoch:
        assert on_epoch is None
