"""A training process killed mid-run resumes from its last checkpoint and ends where an unbroken run ends."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.core.checkpoint import Checkpointing
from pipeline.core.config import TrainConfig
from pipeline.core.data import load_dataset, split_dataset
from pipeline.core.train import train
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

# fp16 with a planted 2**20 loss scale: the first steps are skipped, so the scaler's state matters.
CFG = dict(hidden_size=64, hidden_layers=2, epochs=30, batch_size=64, init_scale=2.0**20, scheduler="cosine")
CHILD = """
import sys, torch
from pathlib import Path
from pipeline.core.checkpoint import Checkpointing
from pipeline.core.config import TrainConfig
from pipeline.core.data import load_dataset, split_dataset
from pipeline.core.train import train
split = split_dataset(load_dataset(sys.argv[1]), 0.2, 0)
train(split, TrainConfig(**eval(sys.argv[3])), "fp16", Checkpointing(Path(sys.argv[2]), every_epochs=1, resume=False),
      device=torch.device("cpu"))
"""


def _kill_after_first_checkpoint(data: Path, ckpt: Path) -> int:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(ckpt), repr(CFG)], cwd=ROOT,
                             start_new_session=True)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    return torch.load(ckpt, weights_only=True)["step"]


def test_resume_after_kill_matches_an_unbroken_run(digits_csv, tmp_path):
    ckpt = tmp_path / "ckpt" / "fp16.pt"
    killed_at = _kill_after_first_checkpoint(digits_csv, ckpt)
    split = split_dataset(load_dataset(digits_csv), 0.2, 0)
    total = CFG["epochs"] * 23
    assert 0 < killed_at < total, "the child must die mid-training for this test to mean anything"

    cpu = torch.device("cpu")
    resumed = train(split, TrainConfig(**CFG), "fp16", Checkpointing(ckpt, every_epochs=1, resume=True), device=cpu)
    unbroken = train(split, TrainConfig(**CFG), "fp16", device=cpu)
    assert resumed.steps == unbroken.steps == total
    assert resumed.skipped_steps == unbroken.skipped_steps > 0
    np.testing.assert_allclose(resumed.epoch_losses, unbroken.epoch_losses, rtol=1e-6)
    for (name, a), (_, b) in zip(resumed.model.state_dict().items(), unbroken.model.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    # measured over the steps this process ran: fewer than the unbroken run's
    assert resumed.timed_steps < unbroken.timed_steps

    again = train(split, TrainConfig(**CFG), "fp16", Checkpointing(ckpt, every_epochs=1, resume=True), device=cpu)
    assert again.samples_per_s == resumed.samples_per_s  # a finished precision is not trained twice


def test_checkpoints_load_weights_only(tmp_path, digits_csv):
    ckpt = tmp_path / "c.pt"
    split = split_dataset(load_dataset(digits_csv), 0.2, 0)
    train(split, TrainConfig(hidden_size=16, hidden_layers=1, epochs=2, batch_size=256), "fp32",
          Checkpointing(ckpt, every_epochs=1, resume=False), device=torch.device("cpu"))
    state = torch.load(ckpt, weights_only=True)  # raises if anything but tensors and plain data were pickled
    assert set(state) == {"step", "model", "optimizer", "scheduler", "scaler", "progress", "done"}
