"""Explicit process set-up: telemetry off, tracking URI. Called by the CLI, never on import."""
from __future__ import annotations

import os
from pathlib import Path

# Opt-outs for the usage data Prefect, MLflow, DVC and Great Expectations send by default.
# setdefault: a user who exports the variable themselves has turned telemetry on on purpose.
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "true",
    "GX_ANALYTICS_ENABLED": "False",
}


def disable_telemetry() -> None:
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


# Prefect's temporary server (no PREFECT_API_URL) gets 20 s to start by default; a loaded 2-core
# laptop or CI runner can take longer, and the run then dies before doing anything.
PREFECT_DEFAULTS = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}


def prefect_defaults() -> None:
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)


def project_root() -> Path:
    """The folder holding data.dvc: the current one or an ancestor, else the current folder."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "data.dvc").is_file() and (folder / "pyproject.toml").is_file():
            return folder
    return here


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded SQLite store under mlruns/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"


def setup_tracking(root: Path) -> str:
    import mlflow

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
