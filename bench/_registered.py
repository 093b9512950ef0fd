"""Shared by the serving benches: train the default model briefly in each precision and register each version
in a throw-away tracking store (the servability check off: the benches measure, they do not promote)."""
from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import mlflow
import torch

from pipeline.core.config import Config
from pipeline.core.data import load_dataset, split_dataset
from pipeline.core.drift import reference_stats
from pipeline.core.evaluate import evaluate
from pipeline.core.promotion import PromotionDecision
from pipeline.core.train import train
from pipeline.tracking import reference, registry
from pipeline.tracking.runs import start_run

ROOT = Path(__file__).resolve().parents[1]
NAME = "bench-classifier"


def throwaway_store() -> tuple[str, Path]:
    home = Path(tempfile.mkdtemp(prefix="mpops-bench-"))
    uri = f"sqlite:///{home / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri, home


def register_precisions(precisions: list[str], home: Path, epochs: int = 1, **train_overrides) -> dict[str, str]:
    """precision -> registered version number; the last one listed is champion."""
    cfg = Config()
    tcfg = replace(cfg.train, epochs=epochs, **train_overrides)
    sp = split_dataset(load_dataset(ROOT / "data"), cfg.data.test_size, cfg.data.split_seed)
    versions = {}
    for p in precisions:
        result = train(sp, tcfg, p, device=torch.device("cpu"))
        ev = evaluate(result.model, sp, result.policy, fgsm_epsilon=0.0)
        run_id = start_run("bench", p, str(home / "artifacts"))
        uri = registry.log_model(run_id, result, sp)
        ref = reference_stats(sp.x_train, sp.feature_columns, sp.classes, p, ev.predictions, ev.accuracy, None,
                              cfg.monitor)
        reference.log_reference(run_id, ref, None, sp)
        reg = registry.register(NAME, uri, {"precision": p}, p, PromotionDecision(True, "bench"))
        versions[p] = reg.version
    return versions
