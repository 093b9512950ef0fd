"""Runs that register at once, against the stores production uses: `mlflow server` and `prefect server` on
PostgreSQL (docs/scaling.md), and the default SQLite store. Each run ends 0 or with one `error:` line, every
version is complete, and `champion` is what the promotion policy gives when the versions are decided one by
one in version order (the order in which the runs took the champion lock)."""
from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, _use_store
from tests.integration.test_cli import DESIGN_TAGS
from tests.integration.test_servers import BIN, Server, _api, base_env, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "digits-classifier"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
# Tiny and quick: one fp32 training of seconds each, no probe, no label-error scan.
TINY = ["train.hidden_size=64", "train.hidden_layers=1", "train.epochs=3", "train.batch_size=128", "probe.steps=0",
        "validation.label_errors=false", "gate.latency_repeats=3", "gate.min_accuracy=0.0",
        "serving.check=false"]  # the champion lock is under test here; servability has its own tests
# A model the policy must never keep as champion once a good one exists: a learning rate too small to learn.
WEAK = ["train.lr=0.00001"]


def postgres_or_skip():
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[test]')")
    try:
        return psycopg.connect(dbname="postgres", connect_timeout=3, autocommit=True, **PG)
    except psycopg.OperationalError as e:
        pytest.skip(f"no PostgreSQL on {PG['host']}:{PG['port']} ({str(e).strip().splitlines()[0]})")


@pytest.fixture()
def databases():
    """Two fresh databases, one for MLflow and one for Prefect, dropped afterwards."""
    admin = postgres_or_skip()
    names = [f"mpops_test_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("mlflow", "prefect")]
    with admin.cursor() as cur:
        for name in names:
            cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield names
    finally:
        with admin.cursor() as cur:
            for name in names:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _url(scheme: str, db: str) -> str:
    return f"{scheme}://{PG['user']}@{PG['host']}:{PG['port']}/{db}"


@pytest.fixture()
def pg_servers(tmp_path, databases):
    """`mlflow server` with a PostgreSQL backend store and `prefect server` with a PostgreSQL database."""
    mlflow_db, prefect_db = databases
    env = base_env(tmp_path)
    mport, pport = free_port(), free_port()
    mlflow_srv = Server("mlflow server", [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mport),
                                          "--workers", "1", "--backend-store-uri", _url("postgresql", mlflow_db),
                                          "--serve-artifacts", "--artifacts-destination", str(tmp_path / "artifacts")],
                        {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, tmp_path / "mlflow-server.log",
                        mport, f"http://127.0.0.1:{mport}/health")
    prefect_srv = Server("prefect server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                            "--port", str(pport)],
                         {**env, "PREFECT_API_DATABASE_CONNECTION_URL": _url("postgresql+asyncpg", prefect_db),
                          "PREFECT_SERVER_UI_ENABLED": "false", "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false"},
                         tmp_path / "prefect-server.log", pport, f"http://127.0.0.1:{pport}/api/health")
    prefect_srv.env = {"PREFECT_API_URL": f"http://127.0.0.1:{pport}/api"}
    try:
        mlflow_srv.wait_healthy(timeout=120)
        prefect_srv.wait_healthy(timeout=180)
        yield f"http://127.0.0.1:{mport}", prefect_srv
    finally:
        mlflow_srv.stop()
        prefect_srv.stop()


def run_at_once(tmp: Path, env: dict[str, str], data: Path, seeds: list[int]) -> list[subprocess.CompletedProcess]:
    """`mpops run` once per seed, all started together; the last seed trains the weak model."""
    procs = []
    for i, seed in enumerate(seeds):
        sets = [*TINY, *(WEAK if i == len(seeds) - 1 else []), f"train.seed={seed}",
                f"validation.report_dir={tmp / f'val{seed}'}", f"train.checkpoint_dir={tmp / f'ckpt{seed}'}"]
        argv = [str(BIN / "mpops"), "run", "--quiet", "--data", str(data), "--precisions", "fp32",
                *[a for s in sets for a in ("--set", s)]]
        procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    done = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def assert_clean_ends(done: list[subprocess.CompletedProcess]) -> int:
    """Every run ended 0, or with exactly one `error:` line and no traceback; returns how many ended 0."""
    for r in done:
        if r.returncode:
            lines = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
            assert len(lines) == 1 and "Traceback" not in r.stderr, f"exit {r.returncode}:\n{r.stderr[-4000:]}"
    return sum(r.returncode == 0 for r in done)


def serial_champion(uri: str, data: Path) -> str | None:
    """The champion the promotion policy gives when the versions are decided one by one, in version order."""
    import mlflow

    from pipeline.core.config_load import load_config
    from pipeline.core.data import load_dataset, split_dataset
    from pipeline.core.evaluate import evaluate
    from pipeline.core.promotion import CurrentChampion, decide_promotion

    cfg = load_config(overrides=TINY)
    sp = split_dataset(load_dataset(data), cfg.data.test_size, cfg.data.split_seed)
    saved = mlflow.get_tracking_uri()
    _use_store(uri)
    try:
        champion = None
        for v in sorted(MlflowClient().search_model_versions(f"name='{MODEL}'"), key=lambda v: int(v.version)):
            bundle = mlflow.pyfunc.load_model(f"models:/{MODEL}/{v.version}").unwrap_python_model().bundle
            ev = evaluate(bundle.model, sp, bundle.policy, fgsm_epsilon=0.0)
            if decide_promotion(ev, champion, sp.y_test, cfg.gate, tuple(map(str, sp.classes))).move_champion:
                champion = CurrentChampion(str(v.version), ev)
    finally:
        _use_store(saved)
    return champion.version if champion else None


def assert_registry_consistent(uri: str, data: Path, registered: int) -> None:
    client = MlflowClient(uri, uri)
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert len(versions) == registered
    for v in versions:  # complete: every tag, the description and the decision
        assert set(DESIGN_TAGS) <= set(v.tags), (v.version, set(DESIGN_TAGS) - set(v.tags))
        assert v.description and v.tags.get("registry.champion_decision"), v.version
    if registered:
        champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
        assert champion == serial_champion(uri, data), [(v.version, v.tags["registry.champion_decision"])
                                                        for v in versions]
    assert [m.name for m in client.search_registered_models()] == ([MODEL] if registered else [])  # no lock left
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]


@pytest.mark.db
def test_four_runs_at_once_on_postgresql(pg_servers, tmp_path, digits_csv):
    uri, prefect_srv = pg_servers
    env = {**base_env(tmp_path), "MLFLOW_TRACKING_URI": uri, **prefect_srv.env}
    done = run_at_once(tmp_path, env, digits_csv, seeds=[1, 2, 3, 4])
    ok = assert_clean_ends(done)
    assert ok >= 1, "\n".join(r.stderr[-2000:] for r in done)
    assert_registry_consistent(uri, digits_csv, registered=ok)

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    async def flow_runs():
        async with get_client() as client:
            return await client.read_flow_runs()

    with _api(prefect_srv):
        states = [r.state.type for r in asyncio.run(flow_runs())]
    # Prefect's PostgreSQL database holds the four flow runs, ended as their processes did.
    assert sorted(states, key=str) == sorted([StateType.COMPLETED] * ok + [StateType.FAILED] * (4 - ok), key=str)


def test_two_runs_at_once_on_the_default_sqlite_store(tmp_path, digits_csv, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # As the first `mpops run` would: the store exists before the two runs (both creating its schema at once
    # on a fresh SQLite file is another race), with its artifacts in the temporary folder.
    MlflowClient(uri, uri).create_experiment("mpops", artifact_location=(tmp_path / "artifacts").as_uri())
    env = {**base_env(tmp_path), "MLFLOW_TRACKING_URI": uri, "PREFECT_API_URL": PREFECT_API_URL.value()}
    done = run_at_once(tmp_path, env, digits_csv, seeds=[1, 2])
    ok = assert_clean_ends(done)
    assert ok >= 1, "\n".join(r.stderr[-2000:] for r in done)
    assert_registry_consistent(uri, digits_csv, registered=ok)


def test_without_postgresql_the_database_tests_skip_with_a_reason(monkeypatch):
    monkeypatch.setitem(PG, "port", free_port())  # nothing listens there
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL on 127.0.0.1:"):
        postgres_or_skip()
