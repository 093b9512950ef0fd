"""`mpops predict`: scoring a table (file or folder), an `.npz` or an image folder with a registered model."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.core.config import DataConfig
from pipeline.core.data import load_data
from pipeline.core.errors import DataValidationError
from pipeline.core.images import refuse_unreadable


def model_inputs(frame: pd.DataFrame, bundle, input_path: str, where: str = "predict") -> pd.DataFrame:
    """The columns the model takes, typed as its signature wants; a missing column, a text cell in a numeric
    column or a category training never saw is a DataValidationError (exit 3)."""
    missing = [c for c in bundle.input_columns if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{where}: {input_path} lacks feature columns the model needs: {missing[:5]}")
    if bundle.encoder is not None:
        bundle.encoder.check(frame, where)
        numeric = [c for c in bundle.input_columns if c not in bundle.encoder.categorical]
    else:
        numeric = list(bundle.input_columns)
    text = [c for c in numeric if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:  # never quoted: pandas quotes the cell in its message, and a text cell may be PII
        raise DataValidationError(f"{where}: {input_path} has non-numeric feature values in {text[:5]} "
                                  "(values not shown)")
    if bundle.encoder is not None:
        return bundle.encoder.as_inputs(frame)
    return frame[list(bundle.input_columns)].astype("float64")  # the signature's type: MLflow refuses int -> float32


def encoded_prepare(bundle):
    """`pipeline.core.chunks.Prepare` for a model with a categorical encoder: the raw columns go to the model
    (its pyfunc one-hots them), the encoded ones to the drift monitor; an unseen category is exit 3."""
    def prepare(frame: pd.DataFrame, where: str):
        return model_inputs(frame, bundle, where), bundle.encoder.transform(frame, where)
    return prepare


def score_whole(model, input_path: str, output_path: str, label_column: str, columns: dict) -> int:
    """An image folder or an .npz, which has no chunked reader: loaded whole, scored, written with a
    `prediction` column and the constant `columns`."""
    bundle = model.unwrap_python_model().bundle
    ds = load_data(input_path, DataConfig(label_column=label_column), require_label=False,
                   image_shape=bundle.image_shape)
    if ds.manifest is not None:
        refuse_unreadable(ds.manifest, "predict")
    predictions = model.predict(model_inputs(ds.frame, bundle, input_path))
    # An image folder's output names each file, not its pixels.
    out = ds.manifest[["path", "class"]].copy() if ds.manifest is not None else ds.frame.copy()
    out["prediction"] = predictions
    for name, value in columns.items():
        out[name] = value
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    if output_path.endswith((".parquet", ".pq")):
        out.to_parquet(output_path, index=False)
    else:
        out.to_csv(output_path, index=False)
    if out.empty:
        raise DataValidationError(f"predict: {input_path} holds no rows")
    return len(out)
