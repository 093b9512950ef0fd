"""The registered model's pyfunc flavour and batch scoring with it."""
from __future__ import annotations

import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from pipeline.errors import ConfigError, DataValidationError


class PrecisionClassifier(mlflow.pyfunc.PythonModel):
    """Predicts class labels from a DataFrame of the feature columns, in the trained precision."""

    def load_context(self, context) -> None:
        from pipeline.models import ModelSpec, build_model
        from pipeline.precision import resolve_device, serving_policy

        meta = json.loads(Path(context.artifacts["meta"]).read_text())
        self.features = meta["feature_columns"]
        self.classes = np.array(meta["classes"])
        self.policy = serving_policy(meta["precision"], resolve_device("auto"))
        model = build_model(ModelSpec(**meta["spec"]))
        model.load_state_dict(torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True))
        self.model = self.policy.convert_module(model).eval()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        from pipeline.evaluate import predict_indices

        x = model_input[self.features].to_numpy(dtype=np.float32)
        return self.classes[predict_indices(self.model, x, self.policy)]


def predict_file(model_uri: str, input_path: str, output_path: str, label_column: str = "label") -> int:
    from pipeline.data import load_dataset

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
    except (TypeError, ValueError) as e:
        raise DataValidationError(f"predict: {input_path} has non-numeric feature values ({e})") from None
    out = frame.copy()
    out["prediction"] = model.predict(x)
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    if output_path.endswith((".parquet", ".pq")):
        out.to_parquet(output_path, index=False)
    else:
        out.to_csv(output_path, index=False)
    return len(out)
