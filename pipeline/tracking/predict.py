"""Batch scoring of a file with a registered model: `mpops predict`."""
from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from pipeline.core.data import load_dataset
from pipeline.core.errors import ConfigError, DataValidationError


def predict_file(model_uri: str, input_path: str, output_path: str, label_column: str = "label") -> int:
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except Exception as e:  # MLflow raises several types for a missing model or alias
        raise ConfigError(f"predict: cannot load {model_uri} ({str(e).splitlines()[0]}); "
                         "run `mpops run` first or pass --model-uri") from None
    frame = load_dataset(input_path, label_column=label_column, require_label=False).frame
    features = [c for c in frame.columns if c not in (label_column, "split")]
    missing = [c for c in model.metadata.get_input_schema().input_names() if c not in features]
    if missing:
        raise DataValidationError(f"predict: {input_path} lacks feature columns the model needs: {missing[:5]}")
    try:
        x = frame[features].astype("float64")  # the signature's type; MLflow's schema check refuses int columns
    except (TypeError, ValueError):  # pandas quotes the cell in its message, and a text cell may be PII
        text = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
        raise DataValidationError(f"predict: {input_path} has non-numeric feature values in {text[:5]} "
                                  "(values not shown)") from None
    out = frame.copy()
    out["prediction"] = model.predict(x)
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    if output_path.endswith((".parquet", ".pq")):
        out.to_parquet(output_path, index=False)
    else:
        out.to_csv(output_path, index=False)
    return len(out)
