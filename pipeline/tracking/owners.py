"""Which process owns an MLflow run, and the runs that processes of this host left RUNNING when they died.

A run killed with SIGKILL (or whose tracking server vanished) cannot end itself; every run therefore
carries its owner's pid, host and start time, and the next `mpops run` marks the runs of a dead owner
KILLED. The start time tells a reused pid from the owner; a run of another host is never touched.
"""
from __future__ import annotations

import socket
from typing import Iterable

import psutil
from mlflow import MlflowClient
from mlflow.entities import Run

PID, HOST, STARTED = "mpops.pid", "mpops.host", "mpops.process_started"
STOPPED = "mpops.stopped"  # why a run was marked KILLED by another process


def owner_tags() -> dict[str, str]:
    me = psutil.Process()
    return {PID: str(me.pid), HOST: socket.gethostname(), STARTED: f"{me.create_time():.2f}"}


def owner_is_dead(tags: dict[str, str]) -> bool:
    """True only when certain: same host, and its pid is gone, a zombie, or now another process."""
    if tags.get(HOST) != socket.gethostname():
        return False
    try:
        pid, started = int(tags[PID]), float(tags.get(STARTED, "nan"))
        process = psutil.Process(pid)
        return process.status() == psutil.STATUS_ZOMBIE or abs(process.create_time() - started) > 1.0
    except (KeyError, ValueError):
        return False  # not a run of ours: leave it alone
    except psutil.NoSuchProcess:
        return True


def abandoned_runs(experiments: Iterable[str]) -> list[Run]:
    """Runs still RUNNING whose owning process on this host is dead."""
    client = MlflowClient()
    ids = [e.experiment_id for e in map(client.get_experiment_by_name, experiments) if e is not None]
    if not ids:
        return []
    running = client.search_runs(ids, f"attributes.status = 'RUNNING' and tags.`{HOST}` = '{socket.gethostname()}'",
                                 max_results=1000)
    return [r for r in running if owner_is_dead(r.data.tags)]


def mark_killed(runs: list[Run]) -> None:
    client = MlflowClient()
    for r in runs:
        client.set_tag(r.info.run_id, STOPPED, f"process {r.data.tags[PID]} on {r.data.tags[HOST]} died while "
                                               "the run was RUNNING; marked KILLED by the next mpops run")
        client.set_terminated(r.info.run_id, "KILLED")
