"""Real servers on 127.0.0.1: an `mlflow server` the pipeline talks to over HTTP, and a `prefect server`
that prefect.yaml's deployments go to, for a process worker and for `mpops serve` to run."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeline.core.provenance import dvc_md5
from pipeline.core.project import TELEMETRY_OFF
from tests.conftest import ROOT, _use_store, fresh_store
from tests.integration.test_cli import DESIGN_TAGS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent
# Seconds of training; 3 epochs reach about 0.88 accuracy, hence the lower floor (the gate itself is tested elsewhere).
TINY = ["train.hidden_size=64", "train.hidden_layers=1", "train.epochs=3", "train.batch_size=128", "probe.steps=0",
        "serving.check=false",
        "gate.min_accuracy=0.8"]
PRECISIONS = "fp32,bf16"
MODEL = "digits-classifier"
# Any attempt to leave 127.0.0.1 over HTTP(S) goes to a closed local port and fails instead of leaving.
LOCAL_ONLY = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
              "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
              "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def live_members(pgid: int) -> list[str]:
    """Processes of the group that are still running (zombies excluded: they hold no port)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(stat.parent.name)
    return alive


class Server:
    """A server command in its own process group, so stopping it stops its worker processes too."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, port: int, health: str):
        self.name, self.port, self.health, self.log = name, port, health, log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(argv, env=env, cwd=log.parent, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode} before answering {self.health}:\n"
                            f"{self.tail()}")
            try:
                with urllib.request.urlopen(self.health, timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        pytest.fail(f"{self.name} did not answer {self.health} within {timeout:.0f} s:\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        pgid = self.proc.pid  # start_new_session: the leader's pid is the group id
        for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and (self.proc.poll() is None or live_members(pgid)):
                time.sleep(0.2)
            if self.proc.poll() is not None and not live_members(pgid):
                break
        self._log.close()
        assert self.proc.poll() is not None and not live_members(pgid), \
            f"{self.name}: processes {live_members(pgid)} of group {pgid} survived SIGKILL"
        deadline = time.monotonic() + 10
        while not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert port_is_free(self.port), f"{self.name}: port {self.port} still in use after the server stopped"


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    return {**env, **TELEMETRY_OFF, **LOCAL_ONLY, "PREFECT_HOME": str(tmp / "prefect-home"), "NO_COLOR": "1"}


def exit_code(main, argv: list[str]) -> int:
    """`mpops` in-process: main() calls sys.exit on failure and returns on success."""
    try:
        main(argv)
    except SystemExit as e:
        return 0 if e.code is None else e.code
    return 0


def _store(db: Path) -> str:
    """The server's store: a new one starts as a migrated copy; a restarted server finds its own again."""
    return f"sqlite:///{db}" if db.exists() else fresh_store(db)


@pytest.fixture()
def mlflow_server(tmp_path):
    port = free_port()
    # No job runner: its seven consumer processes serve GenAI jobs mpops never submits, and cost a 2-core box dearly.
    env = {**base_env(tmp_path), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = Server("mlflow server", [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                                      "--workers", "1", "--backend-store-uri", _store(tmp_path / "mlflow.db"),
                                      "--serve-artifacts", "--artifacts-destination", str(tmp_path / "artifacts")],
                    env, tmp_path / "mlflow-server.log", port, f"http://127.0.0.1:{port}/health")
    try:
        server.wait_healthy(timeout=90)
        yield server
    finally:
        server.stop()


def test_pipeline_registers_on_a_real_mlflow_server(mlflow_server, prefect_server, monkeypatch, tmp_path,
                                                    digits_csv, session_store):
    from mlflow import MlflowClient

    from flows.cli import main

    uri = f"http://127.0.0.1:{mlflow_server.port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    _use_store(uri)
    try:
        with _api(prefect_server):  # the flow reports to the module's Prefect server
            code = exit_code(main, ["run", "--data", str(digits_csv), "--precisions", PRECISIONS,
                                    *[a for s in [*TINY, f"validation.report_dir={tmp_path / 'val'}",
                                                  f"train.checkpoint_dir={tmp_path / 'ckpt'}"] for a in ("--set", s)]])
        assert code == 0, mlflow_server.tail()

        client = MlflowClient(uri, uri)
        [version] = client.search_model_versions(f"name='{MODEL}'")
        assert str(version.version) == "1"
        assert set(DESIGN_TAGS) <= set(version.tags), set(DESIGN_TAGS) - set(version.tags)
        assert version.tags["precision"] in PRECISIONS.split(",") and version.tags["gate.passed"] == "true"
        # --data is a copy outside data/: tagged with its own DVC hash, which is not what data.dvc pins
        assert version.tags["data.md5"] == hashlib.md5(digits_csv.read_bytes()).hexdigest()
        assert version.tags["data.dvc_md5"] == dvc_md5(ROOT) and version.tags["data.pinned"] == "false"
        assert version.tags["validation.passed"] == "true"
        for alias in ("champion", "challenger"):
            assert str(client.get_model_version_by_alias(MODEL, alias).version) == "1"
        parent = client.search_runs([client.get_experiment_by_name("mpops").experiment_id],
                                    "tags.mlflow.runName = 'pipeline'")
        assert len(parent) == 1 and parent[0].info.artifact_uri.startswith("mlflow-artifacts:")
    finally:
        _use_store(session_store)
    # The model went over HTTP into the server's artifact folder, not into a local mlruns/.
    assert any((tmp_path / "artifacts").rglob("MLmodel")), "no MLmodel under the server's --artifacts-destination"


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """One Prefect server for the module: the in-process pipeline of the MLflow test reports to it too."""
    tmp_path = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {**base_env(tmp_path),
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
           "PREFECT_SERVER_UI_ENABLED": "false",
           # The tests trigger their runs themselves; scheduled ones (the next nightly or hourly) would race them.
           "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false"}
    server = Server("prefect server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                       "--port", str(port)],
                    env, tmp_path / "prefect-server.log", port, f"http://127.0.0.1:{port}/api/health")
    server.env = {**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    try:
        server.wait_healthy(timeout=120)
        yield server
    finally:
        server.stop()


def prefect(server, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run([str(BIN / "prefect"), *args], cwd=ROOT, env=server.env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`prefect {' '.join(args)}` ran past {timeout} s:\n{str(e.stdout)[-3000:]}")
    assert r.returncode == 0, f"`prefect {' '.join(args)}` exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_deploy_and_run_nightly_retrain_on_a_real_prefect_server(prefect_server, tmp_path, digits_csv):
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    store = fresh_store(tmp_path / "scheduled-mlflow.db")
    # The store and experiment exist before the two concurrent runs below: on a fresh SQLite store both
    # would create the schema at once and one would fail ("table ... already exists"). The artifact
    # location keeps their artifacts out of the project's mlruns/ (the runs' working folder is the repo).
    MlflowClient(store, store).create_experiment("mpops", artifact_location=(tmp_path / "artifacts").as_uri())
    prefect(prefect_server, "work-pool", "create", "mpops-process", "--type", "process")
    prefect(prefect_server, "--no-prompt", "deploy", "--all")

    async def trigger_and_read(stage: str, run_id=None):
        async with get_client() as client:
            if stage == "deployments":
                return [await client.read_deployment_by_name(f"{flow}/{name}") for flow, name in
                        (("mpops-training", "nightly-retrain"), ("mpops-monitoring", "hourly-monitor"))]
            if stage == "trigger":
                nightly = await client.read_deployment_by_name("mpops-training/nightly-retrain")
                runs = []
                for precisions, extra in ((PRECISIONS, []), ("fp32", ["gate.min_accuracy=0.999"])):
                    # The tracking store travels as a job variable, merged into prefect.yaml's env for this run.
                    runs.append(await client.create_flow_run_from_deployment(
                        nightly.id, job_variables={"env": {"MLFLOW_TRACKING_URI": store}},
                        parameters={"data": str(digits_csv), "precisions": precisions,
                                    "overrides": [*TINY, *extra, f"validation.report_dir={tmp_path / precisions}",
                                                  f"train.checkpoint_dir={tmp_path / precisions / 'ckpt'}"]}))
                return runs
            return await client.read_flow_run(run_id)

    with _api(prefect_server):
        nightly, hourly = asyncio.run(trigger_and_read("deployments"))
    for dep, cron in ((nightly, "0 2 * * *"), (hourly, "0 * * * *")):
        assert dep.work_pool_name == "mpops-process"
        [schedule] = dep.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone) == (cron, "UTC")
        assert dep.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]

    # Two runs, taken by one worker: one that registers, and one whose gate cannot pass (accuracy floor 0.999).
    with _api(prefect_server):
        run, failing = asyncio.run(trigger_and_read("trigger"))
    # The worker's own environment has no tracking URI: the run can only get it from the job variables.
    worker_env = {k: v for k, v in prefect_server.env.items() if k != "MLFLOW_TRACKING_URI"}
    try:
        worker = subprocess.run([str(BIN / "prefect"), "worker", "start", "--pool", "mpops-process", "--run-once",
                                 "--type", "process", "--install-policy", "never"], cwd=tmp_path, env=worker_env,
                                capture_output=True, text=True, timeout=400)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the worker ran past 400 s:\n{str(e.stdout)[-4000:]}")
    log = f"{worker.stdout[-6000:]}\n{worker.stderr[-6000:]}"
    assert worker.returncode == 0, log
    with _api(prefect_server):
        done = asyncio.run(trigger_and_read("read", run.id))
        failed = asyncio.run(trigger_and_read("read", failing.id))
    assert done.state.type == StateType.COMPLETED, f"{done.state.type}: {done.state.message}\n{log}"
    # Like `mpops run` exiting 4: a failed flow run whose state message holds the gate's one line.
    assert failed.state.type == StateType.FAILED, f"{failed.state.type}: {failed.state.message}\n{log}"
    assert "GateFailed: no candidate passed the gates: " in failed.state.message, failed.state.message
    assert failed.state.message.endswith("; nothing registered"), failed.state.message
    assert "  fp32: accuracy floor" in worker.stdout + worker.stderr, log  # the per-candidate detail is logged
    assert "Traceback" not in worker.stdout + worker.stderr, log  # a user error is no crash

    client = MlflowClient(store, store)
    [version] = client.search_model_versions(f"name='{MODEL}'")  # one: the failed gate registered nothing
    assert str(version.version) == "1" and version.tags["gate.passed"] == "true"
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert any((tmp_path / "artifacts").rglob("MLmodel"))


@contextlib.contextmanager
def _api(server):
    """This process's Prefect client talks to `server` for the length of the block."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    with temporary_settings(updates={PREFECT_API_URL: server.env["PREFECT_API_URL"]}):
        try:
            yield
        finally:
            # Flush and stop the log/event workers bound to this server while it is up: the session's
            # Prefect test harness drains every worker at its teardown and would wait forever on a
            # worker whose server is gone.
            APILogWorker.drain_all(timeout=30)
            EventsWorker.drain_all(timeout=30)


def test_mpops_serve_runs_the_deployments_itself(prefect_server, tmp_path):
    """`mpops serve` refuses to take over the work-pool deployments of `prefect deploy`; without them it registers
    prefect.yaml's deployments with their schedules and runs a triggered one in its own process, where a bad
    parameter fails the run with the one-line reason, as `mpops run` would exit 2."""
    import yaml
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    spec = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    env = {**prefect_server.env, "PREFECT_RUNNER_POLL_FREQUENCY": "2",
           "MLFLOW_TRACKING_URI": fresh_store(tmp_path / "mlflow.db")}
    prefect(prefect_server, "work-pool", "create", "mpops-process", "--type", "process", "--overwrite")
    prefect(prefect_server, "--no-prompt", "deploy", "--all")
    refused = subprocess.run([str(BIN / "mpops"), "serve"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.startswith("error: mpops serve: mpops-training/nightly-retrain (work pool mpops-process), "
                                     "mpops-monitoring/hourly-monitor (work pool mpops-process), "
                                     "mpops-predict/batch-predict (work pool mpops-process) already on this "
                                     "Prefect server"), refused.stderr

    async def delete_worker_deployments():
        async with get_client() as client:
            for name in spec:
                await client.delete_deployment((await client.read_deployment_by_name(
                    f"{FLOW_NAMES[name]}/{name}")).id)

    with _api(prefect_server):
        asyncio.run(delete_worker_deployments())
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        serve = subprocess.Popen([str(BIN / "mpops"), "serve"], cwd=ROOT, env=env, stdout=sink,
                                 stderr=subprocess.STDOUT, start_new_session=True)

    async def served():
        async with get_client() as client:
            return {name: await client.read_deployment_by_name(f"{FLOW_NAMES[name]}/{name}") for name in spec}

    async def trigger_and_wait(deployment_id, timeout: float):
        async with get_client() as client:
            run = await client.create_flow_run_from_deployment(
                deployment_id, parameters={"overrides": ["train.epochs=0"]})
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                run = await client.read_flow_run(run.id)
                if run.state.is_final():
                    return run
                await asyncio.sleep(1)
            return run

    try:
        with _api(prefect_server):
            deadline = time.monotonic() + 120
            while "Your deployments are being served" not in log.read_text() and time.monotonic() < deadline:
                assert serve.poll() is None, f"mpops serve exited {serve.returncode}:\n{log.read_text()[-4000:]}"
                time.sleep(1)
            assert serve.poll() is None, f"mpops serve exited {serve.returncode}:\n{log.read_text()[-4000:]}"
            found = asyncio.run(served())
            assert all(d.work_pool_name is None for d in found.values())
            for name, dep in found.items():
                if not spec[name].get("schedules"):  # batch-predict runs on demand
                    assert not dep.schedules
                    continue
                [schedule] = dep.schedules
                yaml_schedule = spec[name]["schedules"][0]
                assert (schedule.schedule.cron, schedule.schedule.timezone) == (yaml_schedule["cron"],
                                                                                yaml_schedule["timezone"])
            run = asyncio.run(trigger_and_wait(found["nightly-retrain"].id, timeout=180))
        assert run.state.type == StateType.FAILED, f"{run.state.type}: {run.state.message}\n{log.read_text()[-4000:]}"
        assert run.state.message.endswith("ConfigError: config: train.epochs must be positive"), run.state.message
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=10)
    assert not live_members(serve.pid), f"mpops serve left processes behind: {live_members(serve.pid)}"


FLOW_NAMES = {"nightly-retrain": "mpops-training", "hourly-monitor": "mpops-monitoring",
              "batch-predict": "mpops-predict"}


def _mlflow_server(tmp_path: Path, port: int) -> Server:
    """An `mlflow server` on a fixed port, its store and artifacts in tmp_path: stopped and started again, it
    comes back with the same runs."""
    env = {**base_env(tmp_path), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = Server("mlflow server", [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                                      "--workers", "1", "--backend-store-uri", _store(tmp_path / "mlflow.db"),
                                      "--serve-artifacts", "--artifacts-destination", str(tmp_path / "artifacts")],
                    env, tmp_path / f"mlflow-server-{time.monotonic_ns()}.log", port, f"http://127.0.0.1:{port}/health")
    server.wait_healthy(timeout=90)
    return server


def test_a_tracking_server_lost_mid_run_fails_within_the_budget_and_resume_registers_without_training(
        tmp_path, digits_csv, prefect_server):
    """The server dies while fp32 trains. Training needs no server and goes on; the first request after it
    (logging fp32's figures) gives up after registry.unreachable_after_s, and the run ends with exit 6 and one
    line, registering nothing and keeping fp32's training and evaluation. Once the server is back,
    `mpops run --resume` registers without training fp32 again, and marks the lost run's runs KILLED."""
    from mlflow import MlflowClient

    port, budget = free_port(), 10
    uri = f"http://127.0.0.1:{port}"
    # The runs report to the module's Prefect server: what is lost here is the tracking server alone.
    env = {**base_env(tmp_path), "MLFLOW_TRACKING_URI": uri, "PREFECT_API_URL": prefect_server.env["PREFECT_API_URL"]}
    sets = [*TINY, "train.epochs=6", "train.batch_size=32", "train.checkpoint_every=1", "gate.min_speedup=0.01",
            f"registry.unreachable_after_s={budget}", f"validation.report_dir={tmp_path / 'val'}",
            "validation.label_errors=false", f"train.checkpoint_dir={tmp_path / 'ckpt'}"]
    argv = [str(BIN / "mpops"), "run", "--data", str(digits_csv), "--precisions", PRECISIONS,
            *[a for s in sets for a in ("--set", s)]]
    server = _mlflow_server(tmp_path, port)
    log = tmp_path / "run.log"
    try:
        with log.open("wb") as sink:
            run = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        deadline = time.monotonic() + 400
        while not list((tmp_path / "ckpt").glob("*/fp32.pt")):
            assert run.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
    finally:
        server.stop()
    lost = time.monotonic()
    try:
        run.wait(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        pytest.fail(f"mpops run still running 300 s after its tracking server died:\n{log.read_text()[-3000:]}")
    waited, output = time.monotonic() - lost, log.read_text()
    assert run.returncode == 6, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: MLflow tracking store {uri} unreachable (Connection refused); nothing was registered"]
    assert "`mpops run --resume` registers without training again" in output
    assert "Traceback" not in output, output[-3000:]
    assert not live_members(run.pid)
    [kept] = list((tmp_path / "ckpt").glob("*/fp32.eval.pt"))

    server = _mlflow_server(tmp_path, port)
    try:
        client = MlflowClient(uri, uri)
        assert client.search_model_versions(f"name='{MODEL}'") == []  # nothing half-registered
        left = {r.info.run_id for r in client.search_runs([client.get_experiment_by_name("mpops").experiment_id])}
        resumed = subprocess.run([*argv, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        assert "fp32: restored from its finished checkpoint, not trained again" in resumed.stdout + resumed.stderr
        [version] = client.search_model_versions(f"name='{MODEL}'")
        assert version.tags["gate.passed"] == "true" and version.tags["mlflow.parent_run_id"] not in left
        assert {client.get_run(r).info.status for r in left} == {"KILLED"}  # marked by the resumed run
    finally:
        server.stop()
    assert not kept.exists()  # a completed run leaves nothing to resume
    print(f"exit 6 came {waited:.1f} s after the server had stopped (budget {budget} s)")
