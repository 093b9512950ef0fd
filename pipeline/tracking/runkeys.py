"""The run key in the registry: does the champion already come from this run's data, code and config?"""
from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.core.runkey import TAG
from pipeline.tracking.registry import CHAMPION


def champion_with_key(model_name: str, key: str) -> str | None:
    """The champion's version when it carries `key`; None when there is no champion or its key differs.

    Only the registry is asked: a local note of past keys could disagree with it (a rollback, a deleted
    version, another machine's run)."""
    try:
        version = MlflowClient().get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None  # no such model, or no champion yet
    return str(version.version) if version.tags.get(TAG) == key else None


def unchanged_line(version: str) -> str:
    return f"unchanged: champion v{version} was trained on the same data, code and config"
