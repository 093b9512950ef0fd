"""prefect.yaml's deployments for `mpops serve`: the same flows, names, schedules and parameters.

The deployments run the very flows the command line calls (flows/training.py:training_flow,
flows/monitoring.py:monitor_flow), with the command line's parameters; there are no wrapper flows.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.errors import ConfigError

PREFECT_YAML = "prefect.yaml"
PATH_PARAMETERS = ("batch", "data", "config")  # relative to the project, where the flow runs start


def deployment_specs(root: Path) -> list[dict[str, Any]]:
    """The `deployments` list of the project's prefect.yaml, the one source of names and schedules."""
    path = root / PREFECT_YAML
    try:
        specs = yaml.safe_load(path.read_text())["deployments"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: cannot read its deployments ({e}); restore prefect.yaml from git") from e
    return specs


def _entry_flow(entrypoint: str):
    """`flows/training.py:training_flow` -> the flow object, imported as a module (no file exec)."""
    file, _, name = entrypoint.partition(":")
    module = importlib.import_module(Path(file).with_suffix("").as_posix().replace("/", "."))
    return getattr(module, name)


def served_deployments(root: Path) -> list:
    """prefect.yaml's deployments as runner deployments for `prefect.serve`: same names, schedules,
    parameters and entrypoints; the work pool is left out, as the serving process runs them itself.
    Call with the current folder at `root`: Prefect records entrypoints relative to it."""
    from prefect.schedules import Cron, Interval

    specs = deployment_specs(root)
    missing = [f"{s['name']}'s {k} {v!r}" for s in specs for k, v in (s.get("parameters") or {}).items()
               if k in PATH_PARAMETERS and v and not (root / str(v)).exists()]
    if missing:
        raise ConfigError(f"{root / PREFECT_YAML}: {', '.join(missing)} does not exist in {root}; create it or "
                          "point the parameter at an existing file or folder")
    deployments = []
    for spec in specs:
        schedules = []
        for s in spec.get("schedules") or []:
            common = {"timezone": s.get("timezone"), "active": s.get("active", True)}
            if "cron" in s:
                schedules.append(Cron(s["cron"], **common))
            elif "interval" in s:
                schedules.append(Interval(s["interval"], **common))
            else:
                raise ConfigError(f"{root / PREFECT_YAML}: deployment {spec['name']}: mpops serve takes cron or "
                                  f"interval schedules, not {sorted(s)}")
        deployments.append(_entry_flow(spec["entrypoint"]).to_deployment(
            name=spec["name"], schedules=schedules, parameters=spec.get("parameters") or {},
            description=spec.get("description"), tags=spec.get("tags") or [], triggers=event_triggers(spec)))
    return deployments


def event_triggers(spec: dict[str, Any]) -> list:
    """A deployment's `triggers:` as `prefect deploy` reads them (type: event only)."""
    from prefect.events import DeploymentEventTrigger

    out = []
    for t in spec.get("triggers") or []:
        fields = {k: v for k, v in t.items() if k != "type"}
        if t.get("type", "event") != "event":
            raise ConfigError(f"{PREFECT_YAML}: deployment {spec['name']}: mpops serve takes event triggers only")
        out.append(DeploymentEventTrigger(**fields))
    return out


def held_by_work_pools(deployments: list) -> list[str]:
    """Those of `deployments` that the Prefect server already holds on a work pool (from `prefect deploy`).

    Serving over one leaves the work-pool deployment's storage settings behind and its runs crash
    ("Downloading flow code from storage at None"), so `mpops serve` refuses instead."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    taken = []
    try:
        with get_client(sync_client=True) as client:
            for d in deployments:
                try:
                    existing = client.read_deployment_by_name(d.full_name)
                except ObjectNotFound:
                    continue
                if existing.work_pool_name:
                    taken.append(f"{d.full_name} (work pool {existing.work_pool_name})")
    except httpx.HTTPError as e:
        raise ConfigError(f"cannot reach the Prefect server at {PREFECT_API_URL.value()} ({e}); start it or fix "
                          "PREFECT_API_URL") from e
    return taken


__all__ = ["deployment_specs", "served_deployments", "held_by_work_pools", "event_triggers"]
