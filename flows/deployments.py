"""Entry flows for the deployments of prefect.yaml and `mpops serve`.

A deployment can only pass JSON-able parameters, so these flows take the strings of the command
line and resolve them exactly as `mpops run` does before calling the same training flow.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Optional

import yaml
from prefect import flow, get_run_logger
from prefect.states import Failed, State

from pipeline.errors import ConfigError, DriftDetected, MpopsError

PREFECT_YAML = "prefect.yaml"


def _resolve(config: Optional[str], data: Optional[str], overrides: Optional[list[str]],
             precisions: Optional[str] = None):
    from flows.cli import _config  # the very resolution `mpops run` does: defaults, --set, data path, root
    from pipeline.setup import disable_telemetry, setup_tracking

    # A worker's flow-run process does not go through flows.cli.main, which turns telemetry off.
    disable_telemetry()
    root, cfg = _config(Path(config) if config else None, data, list(overrides or []), precisions)
    return root, cfg, setup_tracking(root)


@flow(name="mpops-retrain", log_prints=True)
def retrain_entry(config: Optional[str] = None, data: Optional[str] = None, precisions: Optional[str] = None,
                  overrides: Optional[list[str]] = None) -> dict[str, Any] | State:
    """`mpops run --config CONFIG --data DATA --precisions PRECISIONS --set OVERRIDE...` as a flow run.

    Ends Failed with the one-line reason as its state message on a user error (bad config, failed
    validation, no candidate passed the gates), like `mpops run` exits non-zero with that line.
    """
    from flows.training import training_flow

    try:
        root, cfg, uri = _resolve(config, data, overrides, precisions)
    except MpopsError as e:
        return Failed(message=str(e), data=e)
    get_run_logger().info("training %s on %s; tracking store %s", ",".join(cfg.precisions), cfg.data.path, uri)
    state = training_flow(cfg, root, return_state=True)
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        if getattr(error, "detail", ""):  # what `mpops run` prints under its line: per-check, per-candidate reasons
            get_run_logger().error("%s\n%s", state.message, error.detail)
        # Returning the subflow's own state would make Prefect summarise it as "1/1 states failed."
        return Failed(message=state.message, data=error)
    outcome = state.result()
    reg = outcome.registration
    get_run_logger().info("registered %s version %s as %s (%s)", reg.model_name, reg.version,
                          ", ".join(reg.aliases), reg.champion_reason)
    return {"model": reg.model_name, "version": reg.version, "aliases": list(reg.aliases),
            "precision": outcome.gate.selected, "parent_run_id": outcome.parent_run_id}


@flow(name="mpops-monitor-batch", log_prints=True)
def monitor_entry(batch: str, retrain: bool = False, config: Optional[str] = None) -> Any:
    """`mpops monitor --batch BATCH [--retrain]` as a flow run. Drift ends the run Failed (exit 5 for the
    CLI), so a schedule shows it in the UI and in notifications, not only in tags."""
    monitoring = importlib.import_module("flows.monitoring")  # imported late: serve's process starts quicker
    try:
        root, cfg, _ = _resolve(config, None, [])
        outcome = monitoring.monitor_flow(cfg, root, batch, retrain)
        if isinstance(outcome, State):  # the flow ended Failed with a user error (a malformed batch, no champion)
            outcome = outcome.result()
        if outcome.report.drifted:
            raise DriftDetected(f"drift detected in {batch} ({'; '.join(outcome.report.reasons)[:900]}); "
                                f"report {outcome.report_dir}" + (f"; {outcome.retrain}" if outcome.retrain else ""))
        return outcome
    except MpopsError as e:
        return Failed(message=str(e), data=e)


def deployment_specs(root: Path) -> list[dict[str, Any]]:
    """The `deployments` list of the project's prefect.yaml, the one source of names and schedules."""
    path = root / PREFECT_YAML
    try:
        specs = yaml.safe_load(path.read_text())["deployments"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: cannot read its deployments ({e}); restore prefect.yaml from git") from e
    return specs


def _entry_flow(entrypoint: str):
    """`flows/deployments.py:retrain_entry` -> the flow object, imported as a module (no file exec)."""
    file, _, name = entrypoint.partition(":")
    module = importlib.import_module(Path(file).with_suffix("").as_posix().replace("/", "."))
    return getattr(module, name)


def served_deployments(root: Path) -> list:
    """prefect.yaml's deployments as runner deployments for `prefect.serve`: same names, schedules,
    parameters and entrypoints; the work pool is left out, as the serving process runs them itself.
    Call with the current folder at `root`: Prefect records entrypoints relative to it."""
    from prefect.schedules import Cron, Interval

    deployments = []
    for spec in deployment_specs(root):
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
            description=spec.get("description"), tags=spec.get("tags") or []))
    return deployments


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


__all__ = ["retrain_entry", "monitor_entry", "deployment_specs", "served_deployments", "held_by_work_pools"]
