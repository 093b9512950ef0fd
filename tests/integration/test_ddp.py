"""Data-parallel training with torchrun: 2 CPU processes (gloo) on 127.0.0.1 against one process."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.core.config import TrainConfig
from pipeline.core.data import load_dataset, split_dataset
from pipeline.core.evaluate import evaluate
from pipeline.core.train import train
from tests.conftest import ROOT, fresh_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CFG = dict(hidden_size=128, hidden_layers=2, epochs=4, batch_size=128)
SCRIPT = """
import json, sys, torch
from pipeline.core import distributed
from pipeline.core.config import TrainConfig
from pipeline.core.data import load_dataset, split_dataset
from pipeline.core.evaluate import evaluate
from pipeline.core.train import train
w = distributed.init_from_env()
split = split_dataset(load_dataset(sys.argv[1]), 0.2, 0)
r = train(split, TrainConfig(**json.loads(sys.argv[4])), sys.argv[3], device=torch.device("cpu"))
if w.is_main:
    json.dump({"world": w.size, "losses": r.epoch_losses, "accuracy": evaluate(r.model, split, r.policy).accuracy,
               "steps": r.steps}, open(sys.argv[2], "w"))
distributed.shutdown()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), *args]
    # one thread a rank: two ranks on two cores
    run_env = {**(env or os.environ), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=run_env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_two_processes_match_one(digits_csv, tmp_path, precision):
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT)
    out = tmp_path / "rank0.json"
    r = torchrun(str(script), str(digits_csv), str(out), precision, json.dumps(CFG), cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    ddp = json.loads(out.read_text())
    split = split_dataset(load_dataset(digits_csv), 0.2, 0)
    single = train(split, TrainConfig(**CFG), precision, device=torch.device("cpu"))
    assert ddp["world"] == 2 and ddp["steps"] == single.steps
    # same global batches and averaged gradients: equal up to the order of floating-point sums
    assert ddp["losses"] == pytest.approx(single.epoch_losses, rel=0.02)
    assert abs(ddp["accuracy"] - evaluate(single.model, split, single.policy).accuracy) <= 0.02


def test_mpops_run_under_torchrun_logs_from_rank_0_only(tmp_path):
    """The whole pipeline on 2 ranks: one parent run, one child run per precision, one registered version."""
    from mlflow import MlflowClient

    uri = fresh_store(tmp_path / "mlflow.db")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": ""}
    r = torchrun("-m", "flows.cli", "run", "--precisions", "fp32,bf16", "--set", "train.hidden_size=128",
                 "--set", "train.batch_size=128", "--set", "train.epochs=5", "--set", "probe.steps=0",
                 "--set", "serving.check=false",
                 "--set", f"validation.report_dir={tmp_path / 'val'}",
                 "--set", f"train.checkpoint_dir={tmp_path / 'ckpt'}", cwd=ROOT, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    client = MlflowClient(uri, uri)
    runs = client.search_runs([client.get_experiment_by_name("mpops").experiment_id])
    assert sorted(x.data.tags["mlflow.runName"] for x in runs) == ["bf16", "fp32", "pipeline"]
    assert len(client.search_model_versions("name='digits-classifier'")) == 1
    assert r.stdout.count("Summary: ") == 1  # rank 1 printed nothing of its own
