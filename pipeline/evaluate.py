"""Test-split metrics for a trained model, predicted in the precision it was trained in."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, recall_score

from pipeline.data import Split
from pipeline.precision import PrecisionPolicy


@dataclass(frozen=True)
class EvalResult:
    precision: str
    accuracy: float
    macro_f1: float
    per_class_recall: tuple[float, ...]  # index i: recall of split.classes[i]
    predictions: np.ndarray  # (n_test,) class indices


@torch.no_grad()
def predict_indices(model: torch.nn.Module, x: np.ndarray, policy: PrecisionPolicy, batch: int = 1024) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch], dtype=np.float32)).to(policy.device)
        with policy.autocast():
            out.append(model(policy.convert_input(xb)).argmax(dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def evaluate(model: torch.nn.Module, split: Split, policy: PrecisionPolicy) -> EvalResult:
    pred = predict_indices(model, split.x_test, policy)
    labels = list(range(len(split.classes)))
    return EvalResult(
        precision=policy.name,
        accuracy=float(accuracy_score(split.y_test, pred)),
        macro_f1=float(f1_score(split.y_test, pred, labels=labels, average="macro", zero_division=0)),
        per_class_recall=tuple(float(r) for r in recall_score(split.y_test, pred, labels=labels,
                                                              average=None, zero_division=0)),
        predictions=pred,
    )
