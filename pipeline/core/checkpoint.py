"""Training checkpoints: model, optimizer, scheduler and scaler state, so a killed run can resume.

One file per precision under `train.checkpoint_dir/<run key>/`, the key a hash of everything
that shapes training (the config's train and data sections and the data's md5), so `--resume`
never continues a different run. Beside a finished precision's checkpoint, its test evaluation
(`<precision>.eval.pt`): a run that failed after training (the tracking server gone) resumes at
registration, neither training nor evaluating again. Written atomically; read with
`torch.load(weights_only=True)`: a checkpoint is data, never code.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from pipeline.core.evaluate import EvalResult, Latency


@dataclass(frozen=True)
class Checkpointing:
    path: Path  # this precision's checkpoint file
    every_epochs: int
    resume: bool


def run_key(train_cfg: object, data_cfg: object, data_md5: str, code_md5: str = "") -> str:
    """`code_md5`: the source of a model factory of the user's own, which the config names but does not hold."""
    shaping = {"train": asdict(train_cfg), "data": asdict(data_cfg), "md5": data_md5}
    if code_md5:
        shaping["code"] = code_md5
    blob = json.dumps(shaping, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def checkpoint_path(folder: str | Path, key: str, precision: str) -> Path:
    return Path(folder) / key / f"{precision}.pt"


def save(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill during the write leaves the previous checkpoint intact


def load(path: Path, device: torch.device) -> dict | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location=device, weights_only=True)


def remove_run(folder: str | Path, key: str) -> None:
    """After a run that completed: its checkpoints have nothing left to resume."""
    import shutil

    shutil.rmtree(Path(folder) / key, ignore_errors=True)


def eval_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.eval.pt")


def save_eval(path: Path, ev: EvalResult) -> None:
    """The evaluation of the finished training whose checkpoint is `path`."""
    state = {}
    for f in fields(ev):
        value = getattr(ev, f.name)
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        elif isinstance(value, Latency):
            value = asdict(value)
        state[f.name] = list(value) if isinstance(value, tuple) else value
    save(eval_path(path), state)


def load_eval(path: Path) -> EvalResult | None:
    """The kept evaluation of this checkpoint's finished training, or None."""
    if not eval_path(path).is_file():
        return None
    state = torch.load(eval_path(path), weights_only=True)
    values = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    values["per_class_recall"] = tuple(values["per_class_recall"])
    values["latency"] = Latency(**values["latency"]) if values["latency"] is not None else None
    return EvalResult(**values)


def discard_eval(path: Path) -> None:
    """A training that starts afresh makes the evaluation of an earlier one stale."""
    eval_path(path).unlink(missing_ok=True)
