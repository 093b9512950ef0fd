"""`mpops run` stopped from outside, as a subprocess: SIGTERM (how workers, schedulers and CI stop a job)
and SIGKILL. Nothing it started outlives it, no run stays RUNNING, nothing is half-registered."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, _use_store, fresh_store
from tests.integration.test_servers import base_env, live_members

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MPOPS = str(Path(sys.executable).with_name("mpops"))
MODEL = "digits-classifier"


def _args(tmp_path: Path, epochs: int) -> list[str]:
    """fp32 alone, a checkpoint every epoch (the sign that training has started), no label-error check."""
    sets = {"train.hidden_size": 64, "train.hidden_layers": 1, "train.epochs": epochs, "train.batch_size": 32,
            "train.checkpoint_every": 1, "train.checkpoint_dir": tmp_path / "ckpt", "probe.steps": 0,
            "serving.check": False,
            "validation.report_dir": tmp_path / "val", "validation.label_errors": "false", "gate.min_accuracy": 0.5,
            "gate.latency_repeats": 2}
    return ["run", "--precisions", "fp32", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]


@pytest.fixture()
def store(tmp_path) -> tuple[str, dict[str, str]]:
    uri = fresh_store(tmp_path / "mlflow.db")
    # Artifacts beside the store, not in the project's mlruns/ (the runs start in the project folder).
    MlflowClient(uri, uri).create_experiment("mpops", artifact_location=(tmp_path / "artifacts").as_uri())
    return uri, {**base_env(tmp_path), "MLFLOW_TRACKING_URI": uri}


def _start_and_wait_for_training(tmp_path: Path, env: dict, epochs: int) -> subprocess.Popen:
    log = (tmp_path / "run.log").open("ab")
    # Its own process group: the temporary Prefect server it starts joins it, where the test can look for it.
    proc = subprocess.Popen([MPOPS, *_args(tmp_path, epochs)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 400
    while not list((tmp_path / "ckpt").glob("*/fp32.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-4000:]
        time.sleep(0.05)
    return proc


def _statuses(uri: str) -> dict[str, str]:
    client = MlflowClient(uri, uri)
    return {r.info.run_id: r.info.status for r in client.search_runs([client.get_experiment_by_name("mpops")
                                                                      .experiment_id])}


def _no_members_within(pgid: int, seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return live_members(pgid)


def test_sigterm_ends_the_run_within_30_s_with_its_runs_killed(tmp_path, store):
    uri, env = store
    proc = _start_and_wait_for_training(tmp_path, env, epochs=3000)
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"mpops run still running 30 s after SIGTERM:\n{(tmp_path / 'run.log').read_text()[-4000:]}")
    log = (tmp_path / "run.log").read_text()
    assert code == 143, log[-4000:]
    assert "error: stopped by SIGTERM" in log
    assert _no_members_within(proc.pid, 5) == []  # the temporary Prefect server stopped with it
    statuses = _statuses(uri)
    assert sorted(statuses.values()) == ["KILLED", "KILLED"], statuses  # the pipeline run and fp32's
    assert MlflowClient(uri, uri).search_model_versions(f"name='{MODEL}'") == []


def test_sigkill_leaves_no_process_and_its_runs_are_known_abandoned(tmp_path, store, monkeypatch,
                                                                     session_store):
    """Nothing can end the runs of a process killed with SIGKILL; the next `mpops run` finds them by their
    owner tags and marks them KILLED (end to end in test_servers.py, after a lost tracking server)."""
    from pipeline.tracking import owners

    uri, env = store
    proc = _start_and_wait_for_training(tmp_path, env, epochs=3000)
    os.kill(proc.pid, signal.SIGKILL)  # the process alone, as the kernel's OOM killer would
    proc.wait()
    assert _no_members_within(proc.pid, 10) == [], "a child of the killed mpops run is still alive"
    killed = _statuses(uri)
    assert sorted(killed.values()) == ["RUNNING", "RUNNING"], killed  # the pipeline run and fp32's
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    _use_store(uri)
    try:
        assert {r.info.run_id for r in owners.abandoned_runs(["mpops"])} == set(killed)
    finally:
        _use_store(session_store)
