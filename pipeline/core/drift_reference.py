"""The monitoring reference: what a batch is compared with, computed once at registration.

From the training split (bin edges and shares, a row sample for KS, fp16 range) and the test split
(the champion's predictions, accuracy, fp32-twin agreement, and the calibrator of its probabilities for
estimating accuracy without labels). The tracking adapter stores it with the model
(pipeline.tracking.reference), so monitoring never needs the training data. Pure numpy.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipeline.core.config import MonitorConfig
from pipeline.core.performance import Calibrator, fit_calibrator

FP16_MAX = 65504.0
# Empty bins would make PSI infinite (ln 0); the usual floor, small against a 10-bin share of 0.1.
PSI_FLOOR = 1e-4
REFERENCE_SEED = 0


@dataclass(frozen=True)
class FeatureReference:
    name: str
    # Bin i of a value x is searchsorted(edges, x, side="left"): x <= edges[0] (below the training
    # minimum), x == minimum, the quantile bins, and x > maximum, so values outside the training range
    # land in bins whose reference share is 0 and count fully towards PSI.
    edges: tuple[float, ...]
    shares: tuple[float, ...]  # len(edges) + 1, training-split share of each bin
    sample: tuple[float, ...]  # training values for the KS test (a row sample, the same rows for every feature)
    mean: float
    fp16_overflow: int  # training values with |x| > 65504


@dataclass(frozen=True)
class ReferenceStats:
    precision: str  # the champion's precision
    feature_columns: tuple[str, ...]
    classes: tuple[Any, ...]
    features: tuple[FeatureReference, ...]
    prediction_shares: tuple[float, ...]  # champion's predicted class shares on the test split
    test_accuracy: float
    agreement_rate: float | None  # champion vs fp32 twin on the test split; None without a twin
    train_rows: int
    test_rows: int
    # Temperature scaling of the champion's test-split probabilities; None for a reference stored before
    # accuracy estimation existed, or without probabilities.
    calibration: Calibrator | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=_plain)

    @classmethod
    def from_json(cls, text: str) -> "ReferenceStats":
        raw = json.loads(text)
        cal = raw.pop("calibration", None)
        raw["calibration"] = Calibrator(**cal) if cal else None
        feats = tuple(FeatureReference(f["name"], tuple(f["edges"]), tuple(f["shares"]), tuple(f["sample"]),
                                       f["mean"], f["fp16_overflow"]) for f in raw.pop("features"))
        return cls(features=feats, feature_columns=tuple(raw.pop("feature_columns")),
                   classes=tuple(raw.pop("classes")), prediction_shares=tuple(raw.pop("prediction_shares")), **raw)


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Quantile edges of one training feature; duplicates (discrete or constant features) collapse."""
    values = np.asarray(values, dtype=np.float64)
    q = np.quantile(values, np.linspace(0.0, 1.0, bins + 1))
    return np.unique(np.concatenate([[np.nextafter(q[0], -np.inf)], q]))


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(np.asarray(edges), np.asarray(values, dtype=np.float64), side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    return counts / max(len(values), 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def class_shares(indices: np.ndarray, n_classes: int) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64)
    idx = idx[(idx >= 0) & (idx < n_classes)]
    return np.bincount(idx, minlength=n_classes).astype(np.float64) / max(len(indices), 1)


def fp16_overflow(x: np.ndarray) -> np.ndarray:
    """Per column: values fp16 cannot hold (they become inf in an fp16 model)."""
    return (np.abs(np.asarray(x, dtype=np.float64)) > FP16_MAX).sum(axis=0).astype(np.int64)


def reference_stats(x_train: np.ndarray, feature_columns: tuple[str, ...], classes: tuple[Any, ...],
                    precision: str, test_pred: np.ndarray, test_accuracy: float,
                    twin_pred: np.ndarray | None, cfg: MonitorConfig, test_proba: np.ndarray | None = None,
                    test_y: np.ndarray | None = None) -> ReferenceStats:
    """`test_pred`/`twin_pred`: class indices the champion and its fp32 twin predict on the test split;
    `test_proba`/`test_y`: the champion's probabilities there and the true class indices, for the calibrator."""
    x = np.asarray(x_train, dtype=np.float64)
    rng = np.random.default_rng(REFERENCE_SEED)
    rows = np.sort(rng.choice(len(x), size=min(len(x), cfg.reference_sample), replace=False))
    overflow = fp16_overflow(x)
    feats = []
    for j, name in enumerate(feature_columns):
        edges = bin_edges(x[:, j], cfg.psi_bins)
        feats.append(FeatureReference(name, tuple(float(e) for e in edges),
                                      tuple(float(s) for s in bin_shares(x[:, j], edges)),
                                      tuple(float(v) for v in x[rows, j]), float(x[:, j].mean()), int(overflow[j])))
    agreement = None if twin_pred is None else float(np.mean(np.asarray(test_pred) == np.asarray(twin_pred)))
    return ReferenceStats(
        precision=precision, feature_columns=tuple(feature_columns), classes=tuple(plain_value(c) for c in classes),
        features=tuple(feats), prediction_shares=tuple(float(s) for s in class_shares(test_pred, len(classes))),
        test_accuracy=float(test_accuracy), agreement_rate=agreement, train_rows=len(x), test_rows=len(test_pred),
        calibration=None if test_proba is None or test_y is None else fit_calibrator(test_proba, test_y),
    )


def plain_value(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v

