"""The project folder, and the process settings every entry point applies first. Nothing runs on import."""
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


def project_root() -> Path:
    """The folder holding data.dvc: the current one or an ancestor, else the current folder."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "data.dvc").is_file() and (folder / "pyproject.toml").is_file():
            return folder
    return here
