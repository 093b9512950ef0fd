"""A monitoring batch: read and checked, its labels mapped to class indices, scored and compared."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from pipeline.core.config import DataConfig, MonitorConfig
from pipeline.core.data import load_data
from pipeline.core.drift import DriftReport, ReferenceStats, compare, names_list, plain_value
from pipeline.core.encoding import CategoricalEncoder
from pipeline.core.errors import DataValidationError
from pipeline.core.evaluate import predict_indices
from pipeline.core.images import STAT_COLUMNS, refuse_unreadable
from pipeline.core.precision import PrecisionPolicy


@dataclass(frozen=True)
class Batch:
    path: str
    x: np.ndarray  # (rows, features) float64, in the reference's feature order: what drift is measured on
    labels: pd.Series | None  # raw label values, when the batch has the label column
    # Where they differ from `x` (categorical or image data): the registered model's input columns and
    # the network's input rows (for the fp32 twin).
    inputs: pd.DataFrame | None = None
    model_x: np.ndarray | None = None


def _image_batch(path: str, ds, feature_columns: tuple[str, ...], label_column: str) -> Batch:
    refuse_unreadable(ds.manifest, f"monitor: batch {path}")
    if tuple(feature_columns) != STAT_COLUMNS:
        raise DataValidationError(f"monitor: batch {path} is an image folder, but the model was not trained on "
                                  "images; give a table with its feature columns")
    pixels = ds.frame[[c for c in ds.frame.columns if c != label_column]]
    labels = ds.frame[label_column] if label_column in ds.frame.columns else None
    return Batch(str(path), ds.manifest[list(STAT_COLUMNS)].to_numpy(np.float64), labels,
                 pixels.astype("float64"), pixels.to_numpy(np.float32))


def load_batch(path: str, feature_columns: tuple[str, ...], label_column: str,
               encoder: CategoricalEncoder | None = None, image_shape: tuple[int, ...] | None = None) -> Batch:
    """Unreadable, empty, incomplete, non-numeric or non-finite feature data is a DataValidationError (exit 3).

    `encoder`: the model's categorical encoding (an unseen category is exit 3); `image_shape`: an image model's
    input, for a batch that is an image folder."""
    ds = load_data(path, DataConfig(label_column=label_column), require_label=False, image_shape=image_shape)
    if ds.manifest is not None:
        return _image_batch(path, ds, feature_columns, label_column)
    frame = ds.frame
    if encoder is not None:
        return _encoded_batch(path, frame, encoder, label_column)
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


def _encoded_batch(path: str, frame: pd.DataFrame, encoder: CategoricalEncoder, label_column: str) -> Batch:
    missing = [c for c in encoder.input_columns if c not in frame.columns]
    if missing:
        raise DataValidationError(f"monitor: batch {path} lacks {len(missing)} feature column(s) the model needs: "
                                  f"{names_list(missing, 5)}")
    x = encoder.transform(frame, f"monitor: batch {path}")
    if not np.isfinite(x).all():
        raise DataValidationError(f"monitor: batch {path} has missing or infinite feature values; fix or drop "
                                  "those rows")
    labels = frame[label_column] if label_column in frame.columns else None
    return Batch(str(path), x.astype(np.float64), labels, encoder.as_inputs(frame), x)


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
    and compare with the reference; `predict_proba` (the champion's class probabilities of the model's float32
    input rows) gives the accuracy estimate without labels."""
    frame = batch.inputs if batch.inputs is not None else pd.DataFrame(batch.x, columns=list(reference.feature_columns))
    index = {c: i for i, c in enumerate(reference.classes)}
    champion_pred = np.array([index.get(plain_value(v), -1) for v in predict_labels(frame)], dtype=np.int64)
    model_x = batch.model_x if batch.model_x is not None else batch.x.astype(np.float32)
    twin_pred = predict_indices(twin[0], model_x, twin[1]) if twin is not None else None
    y = label_indices(batch.labels, reference.classes) if batch.labels is not None else None
    probs = predict_proba(model_x) if predict_proba is not None else None
    return compare(batch.x, reference, cfg, champion_pred, twin_pred, y, probs)
