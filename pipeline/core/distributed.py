"""Data-parallel training across processes started by `torchrun` (DDP; gloo on CPU, NCCL on GPU).

Rank 0 runs the whole pipeline (Prefect flow, validation, gate, MLflow); the other ranks only
train. Before each training (a probe or a full run) rank 0 announces the precision and its
steps, and the followers join that same `train()` call, so every collective happens in the same
order on every rank. Each step's global batch is the single-process batch, split across ranks;
DDP averages the gradients, so the result matches one process up to floating-point order.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def init_from_env() -> World:
    """Join the process group torchrun describes in the environment; a plain run stays single-process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return world()
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return world()


def shard(idx, w: World):
    """This rank's rows of a global batch (strided, so sizes differ by at most one)."""
    return idx[w.rank::w.size] if w.size > 1 else idx


def all_sum(value: int | float) -> float:
    """The sum over ranks, as a float; the value itself when single-process."""
    if world().size == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def announce(kind: str, precision: str = "", steps: int = 0) -> None:
    """Rank 0 tells the followers what to run next: ("train" | "probe", precision, steps) or ("done")."""
    if world().size > 1 and world().is_main:
        dist.broadcast_object_list([(kind, precision, steps)], src=0)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
