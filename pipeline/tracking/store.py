"""Where MLflow keeps runs and models: MLFLOW_TRACKING_URI, else the embedded store under mlruns/."""
from __future__ import annotations

import os
from pathlib import Path

import mlflow


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded SQLite store under mlruns/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"


def setup_tracking(root: Path) -> str:
    uri = tracking_uri(root)
    if uri.startswith("sqlite:///") and not os.environ.get("MLFLOW_TRACKING_URI"):
        (root / "mlruns").mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def artifact_location(root: Path) -> str | None:
    """Artifacts beside the embedded store; a remote server chooses its own."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    return (root / "mlruns" / "artifacts").as_uri()
