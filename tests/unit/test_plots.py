"""The parent run's plots, on constructed results: each file is a real PNG, fp16 adds its loss-scale plot."""
from __future__ import annotations

import numpy as np
import torch

from pipeline.core.config import GateConfig
from pipeline.core.evaluate import Latency, scores
from pipeline.core.gate import CandidateMetrics, gate
from pipeline.core.models import ModelSpec
from pipeline.render.plots import run_plots
from pipeline.core.precision import make_policy
from pipeline.core.train import TrainResult

CLASSES = tuple(range(10))


def _result(name: str) -> TrainResult:
    scales = (65536.0, 32768.0, 32768.0, 65536.0)
    norms = (float("inf"), 1.0, 0.5, 0.4) if name == "fp16" else (1.0, 0.9, 0.5, 0.4)
    return TrainResult(name, make_policy(name), torch.device("cpu"), ModelSpec(64, 10, 8, 1, "mlp"),
                       torch.nn.Linear(1, 1), (2.0, 1.0, 0.5), 4, 2, 100.0, 1000, 1.0, int(name == "fp16"), 0,
                       grad_norms=norms, loss_scales=scales)


def test_run_plots_writes_every_png(tmp_path):
    y = np.repeat(np.arange(10), 10)
    probs = np.full((100, 10), 0.01)
    probs[np.arange(100), y] = 0.91
    evals = [scores(p, y, probs, 10, 0.8, Latency(1, 1, 1, 1, 1)) for p in ("fp32", "bf16", "fp16")]
    results = [_result(p) for p in ("fp32", "bf16", "fp16")]
    report = gate([CandidateMetrics.of(r, e) for r, e in zip(results, evals)], y, GateConfig(min_speedup=0.5),
                  classes=CLASSES)
    paths = run_plots(tmp_path, results, evals, report, y, CLASSES)
    assert {p.name for p in paths} == {"loss_per_precision.png", "confusion_matrix.png", "per_class_recall.png",
                                       "reliability.png", "loss_scale_fp16.png"}
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
