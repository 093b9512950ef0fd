"""The monitoring reference in the model's run: written before the version exists, read by `mpops monitor`.

Under `monitoring/`: reference.json (pipeline.core.drift.ReferenceStats) and the fp32 twin as a
model bundle, so monitoring never needs the training data and a version either has them or does not exist.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

from pipeline.core.data import Split
from pipeline.core.drift import ReferenceStats
from pipeline.core.errors import ConfigError
from pipeline.core.train import TrainResult
from pipeline.tracking.bundle import Bundle, read_bundle, write_bundle

REFERENCE_DIR = "monitoring"
REFERENCE_FILE = "reference.json"
TWIN_DIR = "fp32_twin"


def log_reference(run_id: str, reference: ReferenceStats, twin: TrainResult | None, split: Split) -> None:
    """`twin`: the fp32 model of the same run (the selected model itself when that is fp32)."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / REFERENCE_FILE).write_text(reference.to_json())
        if twin is not None:
            write_bundle(Path(tmp) / TWIN_DIR, twin.model, twin.precision, twin.spec, split.feature_columns,
                         split.classes, split.encoder, split.image_shape)
        MlflowClient().log_artifacts(run_id, tmp, REFERENCE_DIR)


@dataclass(frozen=True)
class Champion:
    model_uri: str
    model_name: str | None
    version: str | None
    run_id: str
    reference: ReferenceStats
    model: Any  # mlflow.pyfunc.PyFuncModel: predicts labels in the champion's precision
    twin: Bundle | None  # the fp32 twin, None when none was stored


def _name_and_version(model_uri: str) -> tuple[str | None, str | None]:
    if not model_uri.startswith("models:/"):
        return None, None
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    try:
        name, version = get_model_name_and_version(MlflowClient(), model_uri)
    except Exception:  # e.g. models:/m-<id>, a logged model outside the registry: no version to report
        return None, None
    return name, str(version)


def load_champion(model_uri: str) -> Champion:
    """The model, its reference and its twin; a missing model or reference is a ConfigError (exit 2)."""
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except Exception as e:  # MLflow raises several types for a missing model or alias
        raise ConfigError(f"monitor: cannot load {model_uri} ({str(e).splitlines()[0]}); "
                          "register a model with `mpops run` first or pass --model-uri") from None
    run_id = model.metadata.run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=REFERENCE_DIR,
                                                              dst_path=tmp))
            reference = ReferenceStats.from_json((folder / REFERENCE_FILE).read_text())
        except Exception:
            raise ConfigError(f"monitor: {model_uri} (run {run_id}) has no drift reference under {REFERENCE_DIR}/; "
                              "it was registered before drift monitoring existed: register a new version with "
                              "`mpops run`") from None
        twin = read_bundle(folder / TWIN_DIR) if (folder / TWIN_DIR).is_dir() else None
    return Champion(model_uri, *_name_and_version(model_uri), run_id, reference, model, twin)


def proba_function(champion: Champion):
    """The champion's class probabilities of float32 rows, in its precision; None when the loaded model is not
    this project's pyfunc (then there is no accuracy estimate)."""
    from pipeline.core.evaluate import predict_proba

    try:
        bundle = champion.model.unwrap_python_model().bundle
    except Exception:  # another flavour, or a pyfunc without a bundle: no probabilities to estimate from
        return None
    return lambda x: predict_proba(bundle.model, x, bundle.policy)
