"""The registered model's MLflow pyfunc flavour: class labels from a DataFrame of the input columns.

Categorical columns (text) are one-hot encoded by the bundle's encoder; a category training never
saw raises pipeline.core.encoding.UnseenCategory. An image model takes the flat pixel columns."""
from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from pipeline.core.evaluate import predict_indices
from pipeline.tracking.bundle import read_bundle


# mlflow.pyfunc.load_model(uri, model_config={FALLBACK: True}) accepts serving in the mode's fallback.
FALLBACK = "precision_fallback"


class PrecisionClassifier(mlflow.pyfunc.PythonModel):
    """Predicts in the trained precision; where this device lacks it, loading fails unless the caller set
    model_config={"precision_fallback": True}, and then `bundle.served_precision` says what it serves in."""

    def load_context(self, context) -> None:
        allow = bool((getattr(context, "model_config", None) or {}).get(FALLBACK, False))
        self.bundle = read_bundle(Path(context.artifacts["bundle"]), allow_fallback=allow)
        self.features = list(self.bundle.input_columns)
        self.classes = np.array(self.bundle.classes)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        encoder = self.bundle.encoder
        if encoder is not None:
            x = encoder.transform(model_input, "model")
        else:
            x = model_input[self.features].to_numpy(dtype=np.float32)
        return self.classes[predict_indices(self.bundle.model, x, self.bundle.policy)]
