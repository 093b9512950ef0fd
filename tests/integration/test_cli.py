"""`mpops` as a user runs it: a subprocess in a temporary copy of the project, its own tracking store."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, _use_store, fresh_store, run_in_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MPOPS = str(Path(sys.executable).with_name("mpops"))
DESIGN_TAGS = ("precision", "precision.autocast_dtype", "precision.loss_scaling", "precision.device",
               "torch.version", "data.md5", "git.commit", "gate.passed", "gate.speedup_vs_fp32",
               "gate.accuracy_delta_vs_fp32", "gate.memory_ratio_vs_fp32", "validation.passed")
# Smaller than the default model so the suite stays quick; still 0.975 accurate on digits.
FAST = ["--set", "train.hidden_size=256", "--set", "train.epochs=10", "--set", "probe.steps=0",
        "--set", "serving.check=false",  # the probe has its own test
        "--set", "gate.latency_repeats=5"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project with the pinned data/, as a fresh clone would have after `make data`."""
    dest = tmp_path_factory.mktemp("proj") / "mpops"
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".venv", "mlruns", ".dvc-storage", "__pycache__",
                                                               ".pytest_cache", "*.egg-info"))
    return dest


@pytest.fixture(scope="module")
def env(tmp_path_factory, project, prefect_server) -> dict[str, str]:
    home = tmp_path_factory.mktemp("state")
    return {**os.environ, "MLFLOW_TRACKING_URI": fresh_store(home / "mlflow.db"),
            "PREFECT_HOME": str(home / "prefect"), "PREFECT_API_URL": prefect_server, "NO_COLOR": "1"}


@pytest.fixture()
def here(project, env, monkeypatch, session_store, prefect_harness):
    """This process, as an `mpops` subprocess of this module would be: in the project's copy, on its store.
    For the tests of an exit code and its line; each command keeps a real subprocess run here."""
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    _use_store(env["MLFLOW_TRACKING_URI"])
    yield
    _use_store(session_store)


def mpops(project: Path, env: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([MPOPS, *args], cwd=project, env=env, capture_output=True, text=True, timeout=timeout)


def client_for(env) -> MlflowClient:
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(env["MLFLOW_TRACKING_URI"])
    return MlflowClient(env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_URI"])


def error_line(stderr: str) -> str:
    """The one clear line mpops prints for a failure (Prefect's own log lines may come before it).

    A user error is no crash: neither the flow nor mpops may log a traceback for it. (Prefect's
    event worker sometimes logs one of its own when the temporary server stops; not ours.)
    """
    assert "Encountered exception during execution" not in stderr, stderr[-3000:]
    lines = stderr.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    assert not any("Traceback" in line for line in lines[at:at + 20]), stderr[-3000:]
    return lines[at]


def versions(env) -> list:
    return client_for(env).search_model_versions("name='digits-classifier'")


def test_bad_config_exits_2_with_one_line(project, env):
    r = mpops(project, env, "run", "--set", "train.epochs=0")
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines()[0] == "error: config: train.epochs must be positive"
    r = mpops(project, env, "run", "--precisions", "fp32,fp64")
    assert r.returncode == 2 and "unknown precision 'fp64'" in r.stderr


def test_failed_validation_exits_3_and_registers_nothing(project, env, tmp_path, here, monkeypatch):
    bad = pd.read_csv(project / "data" / "digits.csv")
    bad.loc[0, "label"] = 42
    bad.loc[1, "pixel_3"] = 99
    bad.to_csv(tmp_path / "bad.csv", index=False)
    code, out, err = run_in_process(["run", "--data", str(tmp_path / "bad.csv"), *FAST], monkeypatch)
    assert code == 3, out + err
    first = error_line(err)
    assert first.startswith("error: data validation failed: ")
    assert "label: column values to be in set" in first and "pixel_3: column values to be between" in first
    assert versions(env) == []
    runs = client_for(env).search_runs([client_for(env).get_experiment_by_name("mpops").experiment_id])
    assert [x.data.tags["mlflow.runName"] for x in runs] == ["pipeline"]  # nothing trained
    assert runs[0].data.tags["validation.passed"] == "false" and runs[0].info.status == "FAILED"


@pytest.mark.parametrize("content, name", [("", "empty.csv"), ("a,b\n1,2\n", "nolabel.csv")])
def test_unreadable_data_exits_3(tmp_path, content, name, here, monkeypatch):
    (tmp_path / name).write_text(content)
    code, _, err = run_in_process(["validate", "--data", str(tmp_path / name)], monkeypatch)
    assert code == 3, err
    assert error_line(err).startswith("error: data:")


def test_validate_passes_on_bundled_data(project, env):
    r = mpops(project, env, "validate")
    assert r.returncode == 0 and "data validation passed" in r.stdout, r.stderr


@pytest.fixture(scope="module")
def first_run(project, env):
    return mpops(project, env, "run", *FAST, "--report", "out/gate-report.json")


def test_run_writes_the_gate_report_and_a_ci_summary(first_run, project):
    assert first_run.returncode == 0, first_run.stderr[-3000:]
    report = json.loads((project / "out" / "gate-report.json").read_text())
    assert report["passed"] is True and report["exit_code"] == 0
    assert report["gate"]["selected"] in ("fp32", "bf16", "fp16") and report["registered"]["version"] == "1"
    assert {v["precision"] for v in report["gate"]["verdicts"]} == {"fp32", "bf16", "fp16"}
    [summary] = [line for line in first_run.stdout.splitlines() if line.startswith("Summary: ")]
    assert f"The gate selected {report['gate']['selected']} (" in summary
    assert "Registered digits-classifier version 1 as challenger, champion" in summary
    bf16 = next(v for v in report["gate"]["verdicts"] if v["precision"] == "bf16")
    assert bf16["power_summary"].startswith("with 360 test rows this gate detects an accuracy drop of >= ")
    assert f"What the gate could have missed: bf16: {bf16['power_summary']}" in first_run.stdout


def test_run_registers_a_complete_version(first_run, env, project):
    assert first_run.returncode == 0, first_run.stdout[-3000:] + first_run.stderr[-3000:]
    assert "Registered digits-classifier version 1" in first_run.stdout
    client = client_for(env)
    [mv] = versions(env)
    for tag in DESIGN_TAGS:
        assert mv.tags.get(tag), f"tag {tag} missing"
    assert mv.tags["validation.passed"] == "true" and mv.tags["gate.passed"] == "true"
    dvc_md5 = next(line.split(":")[1].strip() for line in (project / "data.dvc").read_text().splitlines()
                   if "md5:" in line)
    assert mv.tags["data.md5"] == dvc_md5
    assert mv.tags["precision"] in ("fp32", "bf16", "fp16")
    assert {a for a in client.get_registered_model("digits-classifier").aliases} == {"champion", "challenger"}
    parent = client.get_run(mv.tags["mlflow.parent_run_id"])
    assert parent.data.params["train.hidden_size"] == "256"
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.data.tags["precision"] for c in children) == ["bf16", "fp16", "fp32"]
    for c in children:
        m, p = c.data.metrics, c.data.params
        # the logged figures agree with each other: FLOP rate = 3 x forward FLOPs x throughput
        assert m["train.model_gflops_per_s"] == pytest.approx(
            3 * int(p["model.flops_per_sample"]) * m["train.samples_per_s"] / 1e9, rel=1e-6)
        # peak training memory holds at least fp32 weights, gradients and Adam's two moments
        assert m["train.peak_memory_mb"] >= 4 * 4 * int(p["model.parameters"]) / 2**20 * 0.99


def test_champion_scores_the_test_split(first_run, env, project):
    assert first_run.returncode == 0
    from pipeline.core.data import load_dataset, split_dataset

    sp = split_dataset(load_dataset(project / "data"), 0.2, 0)
    client_for(env)
    model = mlflow.pyfunc.load_model("models:/digits-classifier@champion")
    frame = pd.DataFrame(sp.x_test, columns=list(sp.feature_columns))
    predicted = model.predict(frame)
    accuracy = (predicted == sp.y_test).mean()
    assert accuracy >= 0.95, accuracy


def test_predict_command_writes_labels(first_run, env, project, tmp_path, here, monkeypatch):
    assert first_run.returncode == 0
    out = tmp_path / "pred.csv"
    r = mpops(project, env, "predict", "--input", str(project / "data" / "digits.csv"), "--output", str(out))
    assert r.returncode == 0, r.stderr
    scored = pd.read_csv(out)
    assert len(scored) == 1797 and (scored["prediction"] == scored["label"]).mean() > 0.95
    # Unlabelled input is what scoring usually gets.
    scored.drop(columns=["label", "prediction"]).to_parquet(tmp_path / "unlabelled.parquet", index=False)
    code, _, err = run_in_process(["predict", "--input", str(tmp_path / "unlabelled.parquet"),
                                   "--output", str(tmp_path / "p2.csv")], monkeypatch)
    assert code == 0, err
    assert pd.read_csv(tmp_path / "p2.csv")["prediction"].tolist() == scored["prediction"].tolist()


def test_gate_failure_exits_4_and_leaves_champion(first_run, env, project, here, monkeypatch):
    assert first_run.returncode == 0
    before = client_for(env).get_model_version_by_alias("digits-classifier", "champion").version
    code, out, err = run_in_process(["run", "--precisions", "fp32", "--set", "gate.min_accuracy=0.999",
                                     "--set", "train.epochs=1", "--set", "train.hidden_size=32",
                                     "--report", "out/failed-gate.json"], monkeypatch)
    assert code == 4, out[-2000:] + err[-2000:]
    report = json.loads((project / "out" / "failed-gate.json").read_text())
    assert report["passed"] is False and report["exit_code"] == 4 and report["gate"]["selected"] is None
    assert error_line(err).startswith("error: no candidate passed the gates")
    assert len(versions(env)) == 1
    assert client_for(env).get_model_version_by_alias("digits-classifier", "champion").version == before


def test_an_unchanged_run_trains_nothing_and_force_retrains(project, env, here, monkeypatch):
    """The champion's run key against this run's, in the registry: same data, code and config, nothing to do."""
    client = client_for(env)
    tiny = ["--precisions", "fp32", "--set", "registry.model_name=digits-tiny", "--set", "train.hidden_size=64",
            "--set", "train.hidden_layers=1", "--set", "train.epochs=5", "--set", "train.batch_size=128",
            "--set", "gate.min_accuracy=0.5",
            "--set", "validation.label_errors=false", "--set", "gate.latency_repeats=2",
            "--set", "serving.check=false"]
    tiny_versions = lambda: client.search_model_versions("name='digits-tiny'")  # noqa: E731
    code, out, err = run_in_process(["run", "--quiet", *tiny], monkeypatch)  # the subprocess run is `again`
    assert code == 0, err[-3000:]
    [first] = tiny_versions()
    assert client.get_model_version_by_alias("digits-tiny", "champion").version == first.version
    assert len(first.tags["run.key"]) == 32
    parent = client.get_run(first.tags["mlflow.parent_run_id"])
    assert parent.data.tags["run.key"] == first.tags["run.key"]
    assert {"time.imports_s", "time.validation_s", "time.train.fp32_s", "time.registration_s",
            "time.overhead_s"} <= set(parent.data.metrics)
    assert any(line.startswith("Seconds: imports ") for line in out.splitlines())
    experiment = parent.info.experiment_id
    runs_before = len(client.search_runs([experiment]))

    again = mpops(project, env, "run", "--quiet", *tiny)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip().splitlines() == [
        f"unchanged: champion v{first.version} was trained on the same data, code and config"]
    assert len(tiny_versions()) == 1 and len(client.search_runs([experiment])) == runs_before

    # (a changed input: tests/unit/test_runkey.py)
    code, _, err = run_in_process(["run", "--quiet", *tiny, "--force"], monkeypatch)
    assert code == 0, err[-3000:]
    keys = [v.tags["run.key"] for v in tiny_versions()]
    assert len(keys) == 2 and keys[0] == keys[1]
