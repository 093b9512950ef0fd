"""A model of the user's own, end to end: trained, registered, then loaded by a plain MLflow client elsewhere.

The factory lives outside the package (tests/integration/factories/) and is copied into a folder of
its own beside a config that names it relative to itself; that folder is deleted before the model
is loaded, in a fresh Python process whose working folder holds no project source.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_in_process
from tests.integration.test_cli import client_for, env, error_line, here, project  # noqa: F401  fixtures

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FACTORIES = Path(__file__).resolve().parent / "factories"
NAME = "factory-e2e"
# A candidate is forced through: no probe, cost checks relaxed; fp32 is registered if bf16 fails on quality.
FORCED = ["probe.steps=0", "train.epochs=6", "train.batch_size=128", "gate.latency_repeats=3",
          "validation.label_errors=false", "gate.min_speedup=0.01", "gate.max_latency_ratio=100",
          "gate.max_memory_ratio=10", "train.checkpoint_every=0"]
LOAD_AND_SCORE = """
import json, sys
import mlflow, pandas as pd
from sklearn.datasets import load_digits

d = load_digits()
frame = pd.DataFrame(d.data[:200], columns=[f"pixel_{i}" for i in range(64)])
model = mlflow.pyfunc.load_model(sys.argv[1])
predicted = model.predict(frame)
factory = [m for name, m in sys.modules.items() if name.startswith("mpops_model_")]
print(json.dumps({"accuracy": float((predicted == d.target[:200]).mean()), "path": sys.path,
                  "factory_file": factory[0].__file__ if factory else None}))
"""


def sets(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


def test_a_factory_model_registers_and_loads_without_its_source(project, env, tmp_path, here,  # noqa: F811
                                                                monkeypatch):
    user = tmp_path / "user"
    user.mkdir()
    shutil.copy(FACTORIES / "tiny_mlp.py", user / "net.py")
    (user / "mpops.yaml").write_text(f"train:\n  model: net.py:build\n  model_params:\n    width: 64\n"
                                     f"registry:\n  model_name: {NAME}\n")
    # In this process (`mpops run` has its subprocess runs in test_cli.py); what matters is where it loads.
    code, out, err = run_in_process(["run", "--config", str(user / "mpops.yaml"), "--precisions", "fp32,bf16",
                                     *sets(*FORCED)], monkeypatch)
    assert code == 0, out[-3000:] + err[-3000:]
    client = client_for(env)
    [mv] = client.search_model_versions(f"name='{NAME}'")
    parent = client.get_run(mv.tags["mlflow.parent_run_id"])
    assert parent.data.params["train.model_params.width"] == "64"
    for run in (parent, client.get_run(mv.run_id)):  # the datasets panel of the pipeline run and the model's run
        inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
        assert set(inputs) == {"data-train", "data-test"}, inputs
        for name, i in inputs.items():
            assert i.dataset.digest == mv.tags["data.md5"] and i.dataset.source_type == "local"
            assert [(t.key, t.value) for t in i.tags] == [("mlflow.data.context", name.split("-")[-1])]
        assert json.loads(inputs["data-test"].dataset.profile)["num_rows"] == 360

    shutil.rmtree(user)
    clean = tmp_path / "clean"
    clean.mkdir()
    plain = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    plain["MLFLOW_REGISTRY_URI"] = env["MLFLOW_TRACKING_URI"]  # pytest pointed this process at its own store
    scored = subprocess.run([sys.executable, "-c", LOAD_AND_SCORE, f"models:/{NAME}@champion"], cwd=clean,
                            env=plain, capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr[-3000:]
    out = json.loads(scored.stdout.strip().splitlines()[-1])
    assert out["accuracy"] > 0.8
    assert "/artifacts/bundle/code/net.py" in out["factory_file"]
    assert not list(clean.glob("**/*.py"))
    assert not any(p.startswith(str(user)) for p in out["path"])
    # The project's own folder is not on the path: only the model's code, stored under its mlruns/.
    assert not any(p.startswith(str(project)) and not p.startswith(str(project / "mlruns")) for p in out["path"])


@pytest.mark.parametrize("attribute, says", [("wrong_shape", "the model returns shape (2, 11)"),
                                             ("not_a_module", "the factory returned str")])
def test_a_broken_factory_stops_the_run_before_training_with_exit_2(tracking_store, prefect_harness, tmp_path,
                                                                     monkeypatch, attribute, says):
    """In this process (the real command is run above): the exit code, the one line, and nothing trained."""
    from mlflow import MlflowClient

    model = f"{FACTORIES / 'tiny_mlp.py'}:{attribute}"
    code, _, err = run_in_process(["run", *sets(*FORCED, f"train.model={model}", "registry.model_name=broken",
                                            f"validation.report_dir={tmp_path / 'val'}",
                                            f"train.checkpoint_dir={tmp_path / 'ckpt'}")], monkeypatch)
    assert code == 2, err[-3000:]
    line = error_line(err)
    assert line.startswith(f"error: train.model={model}: ") and says in line
    client = MlflowClient(tracking_store, tracking_store)
    experiment = [client.get_experiment_by_name("mpops").experiment_id]
    [parent] = client.search_runs(experiment, f"params.`train.model` = '{model}'")
    assert parent.info.status == "FAILED"
    assert client.search_runs(experiment, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'") == []  # no training
    assert client.search_model_versions("name='broken'") == []
