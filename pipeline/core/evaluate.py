"""Test-split metrics for a trained model, each computed in the precision it was trained in."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from pipeline.core.data import Split
from pipeline.core.device import model_device
from pipeline.core.metrics import brier_score, expected_calibration_error
from pipeline.core.precision import PrecisionPolicy


@dataclass(frozen=True)
class Latency:
    p50_ms_batch1: float
    p95_ms_batch1: float
    p50_ms_batch256: float
    p95_ms_batch256: float
    samples_per_s_batch256: float


@dataclass(frozen=True)
class EvalResult:
    precision: str
    accuracy: float
    macro_f1: float
    per_class_recall: tuple[float, ...]  # index i: recall of split.classes[i]
    predictions: np.ndarray  # (n_test,) class indices
    probabilities: np.ndarray | None = None  # (n_test, n_classes) float32 softmax
    macro_precision: float = float("nan")
    macro_recall: float = float("nan")
    ece: float = float("nan")
    brier: float = float("nan")
    fgsm_accuracy: float = float("nan")  # accuracy on test rows perturbed against this very model
    latency: Latency | None = None
    nonfinite_outputs: int = 0  # test rows whose outputs overflowed to inf/NaN (fp16: values past 65504)


@torch.no_grad()
def _forward(model: torch.nn.Module, x: np.ndarray, policy: PrecisionPolicy, batch: int,
             head: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
    """`head` of the float32 logits of each batch of rows, on the CPU."""
    model.eval()
    device, out = model_device(model), []
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch], dtype=np.float32)).to(device)
        with policy.forward_context():
            out.append(head(policy.convert_output(model(policy.convert_input(xb)))).cpu())
    return out


def predict_proba(model: torch.nn.Module, x: np.ndarray, policy: PrecisionPolicy, batch: int = 1024) -> np.ndarray:
    out = _forward(model, x, policy, batch, lambda logits: torch.softmax(logits, dim=1))
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def predict_indices(model: torch.nn.Module, x: np.ndarray, policy: PrecisionPolicy, batch: int = 1024) -> np.ndarray:
    """Class indices: the argmax of the logits (the serving path needs no softmax)."""
    out = _forward(model, x, policy, batch, lambda logits: logits.argmax(dim=1))
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def fgsm_inputs(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, policy: PrecisionPolicy,
                epsilon: float, feature_std: np.ndarray) -> np.ndarray:
    """One FGSM step of size epsilon * each feature's training std, with the gradient taken in the
    model's own precision: the attack a reduced-precision model would face in deployment."""
    model.eval()
    device, rows = model_device(model), len(x)
    # Zero rows up to the mode's row multiple (fp8's weight gradient reduces over rows); they add nothing to the loss.
    padded = np.zeros((rows + (-rows) % policy.mode.row_multiple, x.shape[1]), dtype=np.float32)
    padded[:rows] = x
    xb = torch.from_numpy(padded).to(device).requires_grad_(True)
    with policy.forward_context():
        logits = policy.convert_output(model(policy.convert_input(xb)))[:rows]
    # sum, not mean: per-row gradients stay large enough that fp16 does not flush them to zero
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y).to(device), reduction="sum")
    with policy.numerics():
        (grad,) = torch.autograd.grad(loss, xb)
    step = torch.from_numpy(epsilon * feature_std.astype(np.float32)).to(device)
    return (xb + step * grad.sign())[:rows].detach().cpu().numpy()


def _timed_calls(model: torch.nn.Module, xb: torch.Tensor, policy: PrecisionPolicy, repeats: int) -> np.ndarray:
    times = []
    with torch.no_grad(), policy.forward_context():
        x = policy.convert_input(xb)
        model(x)  # warm-up: first-call allocations and kernel selection
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            if xb.device.type == "cuda":
                torch.cuda.synchronize()  # the kernels are asynchronous: time them, not their launch
            times.append(time.perf_counter() - start)
    return np.array(times) * 1000.0


def measure_latency(model: torch.nn.Module, x: np.ndarray, policy: PrecisionPolicy, repeats: int) -> Latency:
    """Inference latency at batch 1 and 256, the same way for every precision."""
    model.eval()
    rows = np.resize(np.ascontiguousarray(x, dtype=np.float32), (256, x.shape[1]))
    big = torch.from_numpy(rows).to(model_device(model))
    one = _timed_calls(model, big[:1], policy, repeats * 10)
    many = _timed_calls(model, big, policy, repeats)
    return Latency(float(np.percentile(one, 50)), float(np.percentile(one, 95)), float(np.percentile(many, 50)),
                   float(np.percentile(many, 95)), float(256 / (np.median(many) / 1000.0)))


def scores(precision: str, y: np.ndarray, probs: np.ndarray, n_classes: int, fgsm_accuracy: float = float("nan"),
           latency: Latency | None = None) -> EvalResult:
    """Every test metric from the softmax outputs on labelled rows."""
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    labels = list(range(n_classes))
    return EvalResult(
        precision=precision,
        accuracy=float(accuracy_score(y, pred)) if len(y) else float("nan"),
        macro_f1=float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        per_class_recall=tuple(float(r) for r in recall_score(y, pred, labels=labels, average=None,
                                                              zero_division=0)),
        predictions=pred,
        probabilities=probs.astype(np.float32),
        macro_precision=float(precision_score(y, pred, labels=labels, average="macro", zero_division=0)),
        macro_recall=float(recall_score(y, pred, labels=labels, average="macro", zero_division=0)),
        ece=expected_calibration_error(y, probs),
        brier=brier_score(y, probs),
        fgsm_accuracy=fgsm_accuracy,
        latency=latency,
        nonfinite_outputs=int((~np.isfinite(probs)).any(axis=1).sum()) if len(probs) else 0,
    )


def evaluate(model: torch.nn.Module, split: Split, policy: PrecisionPolicy, fgsm_epsilon: float = 0.1,
             latency_repeats: int = 0) -> EvalResult:
    """`fgsm_epsilon` 0 or `latency_repeats` 0 skip those measurements (they then read NaN / None)."""
    y = split.y_test
    fgsm = float("nan")
    if len(y) and fgsm_epsilon > 0:
        std = split.x_train.std(axis=0) if len(split.x_train) else np.ones(split.x_test.shape[1])
        adv = fgsm_inputs(model, split.x_test, y, policy, fgsm_epsilon, std)
        fgsm = float(np.mean(predict_indices(model, adv, policy) == y))
    latency = measure_latency(model, split.x_test, policy, latency_repeats) if latency_repeats else None
    return scores(policy.name, y, predict_proba(model, split.x_test, policy), len(split.classes), fgsm, latency)
