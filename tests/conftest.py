from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.core.project import disable_telemetry

ROOT = Path(__file__).resolve().parents[1]
disable_telemetry()


@pytest.fixture(scope="session")
def digits_frame() -> pd.DataFrame:
    from sklearn.datasets import load_digits

    d = load_digits()
    frame = pd.DataFrame(d.data.astype(np.int64), columns=[f"pixel_{i}" for i in range(64)])
    frame["label"] = d.target
    return frame


@pytest.fixture()
def digits_csv(tmp_path, digits_frame) -> Path:
    path = tmp_path / "digits.csv"
    digits_frame.to_csv(path, index=False)
    return path


_TEMPLATE: list[Path] = []


def fresh_store(db: Path) -> str:
    """The URI of a new, empty MLflow SQLite store at `db`: a copy of one migrated once per test process, since
    MLflow's schema migrations take seconds for every new database (MLflow then finds it at its head)."""
    if not _TEMPLATE:
        from mlflow import MlflowClient

        folder = tempfile.mkdtemp(prefix="mpops-store-template-")
        atexit.register(shutil.rmtree, folder, True)
        template = Path(folder) / "empty.db"
        MlflowClient(f"sqlite:///{template}").search_experiments()
        _TEMPLATE.append(template)
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_TEMPLATE[0], db)
    return f"sqlite:///{db}"


def _has_mlflow() -> bool:
    """False in a torch-only environment (bench/gpu_check.sh on a GPU machine), which runs the core tests."""
    import importlib.util

    return importlib.util.find_spec("mlflow") is not None


def _use_store(uri: str) -> None:
    if not _has_mlflow():
        return
    import mlflow
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


@pytest.fixture(autouse=True)
def mlflow_http_settings():
    """A flow run in this process sets MLflow's HTTP retry budget (registry.unreachable_after_s), and a dead
    server makes it fail fast: neither may leak into the next test."""
    try:
        from pipeline.tracking import store
    except ImportError:  # no mlflow: a torch-only environment, where no flow runs
        yield
        return
    saved = {k: os.environ.get(k) for k in (store.RETRIES, store.BACKOFF, store.JITTER, store.TIMEOUT)}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session", autouse=True)
def session_store(tmp_path_factory):
    """No test may fall back to MLflow's default store (./mlflow.db in the working folder)."""
    uri = fresh_store(tmp_path_factory.mktemp('mlflow') / 'session.db') if _has_mlflow() else "sqlite:///unused"
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    _use_store(uri)
    yield uri
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture()
def tracking_store(tmp_path, monkeypatch, session_store) -> str:
    """A private SQLite tracking store, so tests never touch the project's mlruns/."""
    uri = fresh_store(tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    _use_store(uri)
    yield uri
    _use_store(session_store)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> str:
    """One Prefect API server on 127.0.0.1 for the whole session: every `mpops` subprocess (PREFECT_API_URL in
    the environment it inherits) and every in-process flow (prefect_harness) uses it, instead of starting one
    of its own at a few seconds each. It is mpops' own temporary server, so it dies with this process."""
    from flows.processes import start_server, stop_server

    server, url = start_server({"PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home"))}, timeout=180)
    saved = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        yield url
    finally:
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved
        stop_server(server)


@pytest.fixture(scope="session")
def prefect_harness(prefect_server):
    """In-process flows talk to the session's server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.processes import drain_workers

    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        try:
            yield
        finally:
            drain_workers()  # Prefect's log and event workers flush before the server stops


def run_in_process(argv: list[str], monkeypatch) -> tuple[int, str, str]:
    """The CLI in this process (a subprocess would import the whole stack again, seconds each time).

    Returns the exit code and what mpops itself printed to stdout and stderr; Prefect's log lines
    go to pytest's own capture."""
    import io

    from rich.console import Console

    from flows import cli_base

    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(cli_base, "out", Console(file=out, width=200, soft_wrap=True))
    monkeypatch.setattr(cli_base, "err", Console(file=err, width=200, soft_wrap=True))
    return mpops(*argv), out.getvalue(), err.getvalue()


def mpops(*args: str) -> int:
    """`mpops ARGS` in this process (the session's Prefect server and store); returns the exit code."""
    from flows.cli import main

    try:
        main(list(args))
    except SystemExit as e:
        return int(e.code or 0)
    return 0
