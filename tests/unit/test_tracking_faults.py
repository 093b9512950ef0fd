"""The runs a dead process left RUNNING: the owner tags and the clean-up, on a private SQLite store."""
from __future__ import annotations

import socket
import subprocess

import pytest
from mlflow import MlflowClient

from pipeline.tracking import owners, registry, runs


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_runs_of_dead_processes_are_marked_killed_and_their_unfinished_versions_deleted(tracking_store):
    client = MlflowClient()
    mine = runs.start_run("mpops", "pipeline", None)
    dead = runs.start_run("mpops", "pipeline", None, tags={owners.PID: str(_dead_pid())})
    elsewhere = runs.start_run("mpops", "pipeline", None, tags={owners.PID: str(_dead_pid()),
                                                                 owners.HOST: "another-host"})
    assert client.get_run(mine).data.tags[owners.HOST] == socket.gethostname()
    client.create_registered_model("m")
    half = client.create_model_version("m", "file:///nowhere", tags={"mlflow.parent_run_id": dead}).version
    whole = client.create_model_version("m", "file:///nowhere", tags={"mlflow.parent_run_id": dead}).version
    client.set_registered_model_alias("m", "challenger", whole)  # its registration got as far as the alias

    stale = owners.abandoned_runs(["mpops", "no-such-experiment"])
    assert [r.info.run_id for r in stale] == [dead]
    owners.mark_killed(stale)
    assert registry.delete_unfinished("m", dead) == [str(half)]

    status = {r: client.get_run(r).info.status for r in (mine, dead, elsewhere)}
    assert status == {mine: "RUNNING", dead: "KILLED", elsewhere: "RUNNING"}
    assert "died while the run was RUNNING" in client.get_run(dead).data.tags[owners.STOPPED]
    assert [v.version for v in client.search_model_versions("name = 'm'")] == [whole]


def test_a_reused_pid_is_not_the_owner():
    tags = owners.owner_tags()
    assert not owners.owner_is_dead(tags)
    assert owners.owner_is_dead({**tags, owners.STARTED: str(float(tags[owners.STARTED]) - 3600)})
    assert not owners.owner_is_dead({owners.HOST: socket.gethostname()})  # no pid: not a run of ours


def test_tracked_run_ends_killed_when_the_process_is_stopped(tracking_store):
    with pytest.raises(KeyboardInterrupt), runs.tracked_run("mpops", "pipeline") as run_id:
        raise KeyboardInterrupt
    assert MlflowClient().get_run(run_id).info.status == "KILLED"
