"""A monitoring batch: read and checked, its labels mapped to class indices, scored and compared."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from pipeline.core.config import MonitorConfig
from pipeline.core.data import load_dataset
from pipeline.core.drift import DriftReport, ReferenceStats, compare, names_list, plain_value
from pipeline.core.errors import DataValidationError
from pipeline.core.evaluate import predict_indices
from pipeline.core.precision import PrecisionPolicy


@dataclass(frozen=True)
class Batch:
    path: str
    x: np.ndarray  # (rows, features) float64, in the reference's feature order
    labels: pd.Series | None  # raw label values, when the batch has the label column


def load_batch(path: str, feature_columns: tuple[str, ...], label_column: str) -> Batch:
    """Unreadable, empty, incomplete, non-numeric or non-finite feature data is a DataValidationError (exit 3)."""
    frame = load_dataset(path, label_column=label_column, require_label=False).frame
    missing = [c for c in feature_columns if c not in frame.columns]
    if missing:
        raise DataValidationError(f"monitor: batch {path} lacks {len(missing)} feature column(s) the model needs: "
                                  f"{names_list(missing, 5)}")
    feats = frame[list(feature_columns)]
    bad = [c for c in feature_columns if not pd.api.types.is_numeric_dtype(feats[c])
           or pd.api.types.is_bool_dtype(feats[c])]
    if bad:
        # Counted, never quoted: a text cell may be PII (pipeline.core.validation.redact).
        cells = int((pd.to_numeric(feats[bad[0]], errors="coerce").isna() & feats[bad[0]].notna()).sum())
        raise DataValidationError(f"monitor: batch {path} has non-numeric values in {names_list(bad, 5)} "
                                  f"({cells} text cell(s) in {bad[0]}, values not shown); "
                                  "feature columns must be numbers")
    x = feats.to_numpy(dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.all():
        cols = [feature_columns[j] for j in np.flatnonzero(~finite.all(axis=0))]
        raise DataValidationError(f"monitor: batch {path} has {int((~finite).sum())} missing or infinite feature "
                                  f"values, in {names_list(cols, 5)}; fix or drop those rows")
    labels = frame[label_column] if label_column in frame.columns else None
    return Batch(str(path), x, labels)


def label_indices(labels: pd.Series, classes: tuple[Any, ...]) -> np.ndarray:
    """Class index of each label; -1 for a missing label or one the model never saw."""
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        values = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=np.float64)
        index = {float(c): i for i, c in enumerate(classes)}
        return np.array([index.get(v, -1) if not math.isnan(v) else -1 for v in values], dtype=np.int64)
    index = {str(c): i for i, c in enumerate(classes)}
    return np.array([index.get(str(v), -1) if pd.notna(v) else -1 for v in labels], dtype=np.int64)


def score_batch(batch: Batch, reference: ReferenceStats, cfg: MonitorConfig,
                predict_labels: Callable[[pd.DataFrame], np.ndarray],
                twin: tuple[torch.nn.Module, PrecisionPolicy] | None = None,
                predict_proba: Callable[[np.ndarray], np.ndarray] | None = None) -> DriftReport:
    """Score the batch with the champion (`predict_labels`: its labels, in its precision) and its fp32 twin,
    and compare with the reference; `predict_proba` (the champion's class probabilities of float32 rows)
    gives the accuracy estimate without labels."""
    frame = pd.DataFrame(batch.x, columns=list(reference.feature_columns))
    index = {c: i for i, c in enumerate(reference.classes)}
    champion_pred = np.array([index.get(plain_value(v), -1) for v in predict_labels(frame)], dtype=np.int64)
    twin_pred = predict_indices(twin[0], batch.x.astype(np.float32), twin[1]) if twin is not None else None
    y = label_indices(batch.labels, reference.classes) if batch.labels is not None else None
    probs = predict_proba(batch.x.astype(np.float32)) if predict_proba is not None else None
    return compare(batch.x, reference, cfg, champion_pred, twin_pred, y, probs)
