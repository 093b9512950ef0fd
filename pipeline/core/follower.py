"""A torchrun follower rank: join each training that rank 0 announces (pipeline.core.distributed)."""
from __future__ import annotations

import torch
import torch.distributed as dist

from pipeline.core.config import TrainConfig
from pipeline.core.data import Split
from pipeline.core.probe import probe_one
from pipeline.core.train import train


def follow(split: Split, cfg: TrainConfig, device: torch.device) -> int:
    """Returns how many trainings this rank joined, once rank 0 says "done"."""
    joined = 0
    while True:
        message = [None]
        dist.broadcast_object_list(message, src=0)
        kind, precision, steps = message[0]
        if kind == "done":
            return joined
        if kind == "probe":
            probe_one(split, cfg, precision, steps, device)
        else:
            train(split, cfg, precision, device=device)  # no checkpointing: rank 0 alone writes checkpoints
        joined += 1
