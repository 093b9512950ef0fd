"""The registered model's MLflow pyfunc flavour: class labels from a DataFrame of the feature columns."""
from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from pipeline.core.evaluate import predict_indices
from pipeline.tracking.bundle import read_bundle


class PrecisionClassifier(mlflow.pyfunc.PythonModel):
    """Predicts in the trained precision (or its serving fallback where this device lacks it)."""

    def load_context(self, context) -> None:
        self.bundle = read_bundle(Path(context.artifacts["bundle"]))
        self.features = list(self.bundle.feature_columns)
        self.classes = np.array(self.bundle.classes)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        x = model_input[self.features].to_numpy(dtype=np.float32)
        return self.classes[predict_indices(self.bundle.model, x, self.bundle.policy)]
