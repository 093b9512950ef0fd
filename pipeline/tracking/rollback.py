"""`mpops rollback`: move `champion` back, under the champion lock, recorded in the promotion history and as
tags on the version it moves to (who, why, when, from which version)."""
from __future__ import annotations

from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.core.errors import ConfigError
from pipeline.core.rollback import refusals
from pipeline.tracking import history
from pipeline.tracking.champion_lock import champion_lock
from pipeline.tracking.registry import CHAMPION


@dataclass(frozen=True)
class Rollback:
    from_version: str | None
    to_version: str
    reason: str  # as recorded in the history


def _champion_version(client: MlflowClient, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def _target(client: MlflowClient, name: str, current: str | None, to: str | None) -> str:
    target = to or history.previous_champion(history.read(client, name), current)
    if target is None:
        raise ConfigError(f"rollback: {name} has no previous champion in its promotion history; "
                          "name a version with --to VERSION")
    if target == current:
        raise ConfigError(f"rollback: version {target} of {name} is already champion")
    return target


def rollback(name: str, reason: str, to: str | None = None, force: bool = False) -> Rollback:
    if not reason.strip():
        raise ConfigError("rollback: --reason must say why")
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        raise ConfigError(f"rollback: no registered model {name}; run `mpops run` first") from None
    # A registration holds the lock through its servability check: waited for, never broken as stale early.
    with champion_lock(client, name, wait_s=900.0, stale_after_s=600.0):
        current = _champion_version(client, name)
        target = _target(client, name, current, to)
        try:
            version = client.get_model_version(name, target)
        except MlflowException:
            raise ConfigError(f"rollback: {name} has no version {target}") from None
        refused = refusals(version.status, version.tags)
        if refused and not force:
            raise ConfigError(f"rollback: version {target} of {name} may not serve: {'; '.join(refused)}; "
                              "champion unchanged (--force moves it anyway)")
        text = f"rollback from version {current or '-'}: {reason}" + \
            (f" (forced although {'; '.join(refused)})" if refused else "")
        entry = history.move_alias(client, name, CHAMPION, target, text)
        for key, value in {"rollback.reason": reason[:5000], "rollback.by": entry["by"],
                           "rollback.time": entry["time"],
                           "rollback.from": current or "", "rollback.forced": str(bool(refused)).lower()}.items():
            client.set_model_version_tag(name, target, key, value)
    return Rollback(current, target, text)
