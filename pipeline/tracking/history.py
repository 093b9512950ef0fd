"""The promotion history of a registered model: every alias move mpops makes (challenger, champion, rollback).

Kept on the registered model itself, one tag per move, `history.000001`, `history.000002`, ..., each a JSON
object {version, alias, reason, time, run, by}: a tag per entry never outgrows MLflow's tag size limit, shows
in the UI as it is, and needs no other store. Entries are written while the champion lock is held, so their
numbers follow the order of the moves.
"""
from __future__ import annotations

import getpass
import json
import socket
from datetime import datetime, timezone
from typing import Any

from mlflow import MlflowClient

PREFIX = "history."


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def read(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    """Every recorded move, oldest first."""
    tags = client.get_registered_model(name).tags
    return [json.loads(tags[k]) for k in sorted(k for k in tags if k.startswith(PREFIX))]


def move_alias(client: MlflowClient, name: str, alias: str, version: str, reason: str, run: str = "") -> dict:
    """Point `alias` at `version` and record the move; call it with the champion lock held."""
    client.set_registered_model_alias(name, alias, version)
    entry = {"version": str(version), "alias": alias, "reason": reason[:1000],
             "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "run": run, "by": who()}
    count = sum(1 for k in client.get_registered_model(name).tags if k.startswith(PREFIX))
    client.set_registered_model_tag(name, f"{PREFIX}{count + 1:06d}", json.dumps(entry))
    return entry


def previous_champion(entries: list[dict[str, Any]], current: str | None) -> str | None:
    """The version that held `champion` before the current one took it: the newest champion entry naming
    another version, walked back from the end."""
    for entry in reversed(entries):
        if entry["alias"] == "champion" and entry["version"] != current:
            return entry["version"]
    return None
