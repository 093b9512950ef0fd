"""A tracking store that stops answering, and the runs a dead process left RUNNING: the retry budget,
the preflight, the owner tags and the clean-up, on a private SQLite store and a closed local port."""
from __future__ import annotations

import socket
import subprocess
import time

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.core.errors import ServiceUnavailable
from pipeline.tracking import owners, registry, runs, store


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket closes


@pytest.mark.parametrize("budget", [1, 2, 5, 10, 60, 300, 3600])
def test_retry_settings_fit_the_budget_even_when_every_attempt_times_out(budget):
    s = store.retry_settings(budget)
    retries, timeout = int(s[store.RETRIES]), int(s[store.TIMEOUT])
    jitter = float(s[store.JITTER])
    # urllib3 sleeps factor * 2**(n-1) before retry n >= 2, plus up to `jitter`; every attempt may wait `timeout`
    worst = sum(2 ** (n - 1) + jitter for n in range(2, retries + 1)) + (retries + 1) * timeout
    assert worst <= budget
    assert 0 <= retries <= 7 and timeout >= 1 and s[store.BACKOFF] == "1"  # within MLflow's accepted ranges


def test_preflight_names_the_unreachable_uri_and_exits_6(monkeypatch, tracking_store):
    uri = f"http://127.0.0.1:{_closed_port()}"
    for key, value in store.retry_settings(2).items():
        monkeypatch.setenv(key, value)
    mlflow.set_tracking_uri(uri)
    start = time.monotonic()
    with pytest.raises(ServiceUnavailable) as error:
        store.preflight()
    assert time.monotonic() - start < 30  # the budget, not MLflow's default of minutes
    assert error.value.exit_code == 6
    assert str(error.value).startswith(f"MLflow tracking store {uri} unreachable (Connection refused)")
    assert "\n" not in str(error.value)


def test_an_answer_from_the_store_is_not_unreachability(tracking_store):
    with pytest.raises(MlflowException) as error:
        MlflowClient().get_run("0" * 32)
    assert not store.is_unreachable(error.value)
    assert store.preflight() == tracking_store


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
