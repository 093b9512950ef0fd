"""`mpops predict` as a Prefect flow: chunked scoring with model name, version and precision columns, the drift
monitor on the same rows, one MLflow run per batch; and a memory bound on a large file, measured in a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from pipeline.core.config import MonitorConfig
from pipeline.core.config_load import load_config
from pipeline.core.data import load_dataset, split_dataset
from pipeline.core.drift import reference_stats
from pipeline.core.evaluate import evaluate
from pipeline.core.promotion import PromotionDecision
from pipeline.core.train import train
from pipeline.tracking import reference, registry
from pipeline.tracking.runs import start_run
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NAME = "digits-classifier"


@pytest.fixture()
def champion(tracking_store, digits_csv, tmp_path):
    """A tiny fp32 champion with its drift reference, registered without the servability check."""
    cfg = load_config(overrides=["train.hidden_size=32", "train.hidden_layers=1", "train.epochs=4"])
    sp = split_dataset(load_dataset(digits_csv), 0.2, 0)
    result = train(sp, cfg.train, "fp32", device=torch.device("cpu"))
    ev = evaluate(result.model, sp, result.policy, fgsm_epsilon=0.0)
    run_id = start_run("t", "fp32", str(tmp_path / "art"))
    uri = registry.log_model(run_id, result, sp)
    ref = reference_stats(sp.x_train, sp.feature_columns, sp.classes, "fp32", ev.predictions, ev.accuracy,
                          ev.predictions, MonitorConfig())
    reference.log_reference(run_id, ref, result, sp)
    registry.register(NAME, uri, {"precision": "fp32"}, "d", PromotionDecision(True, "no champion yet"))
    return sp


def test_predict_flow_scores_in_chunks_and_checks_drift_in_the_same_pass(prefect_harness, champion, digits_csv,
                                                                         tmp_path, monkeypatch):
    from flows.predict import predict_flow

    monkeypatch.chdir(ROOT)
    out = tmp_path / "pred.parquet"
    o = predict_flow(str(digits_csv), str(out), overrides={"serving.predict_chunk_rows": 500,
                                                           "monitor.report_dir": str(tmp_path / "mon")})
    scored = pd.read_parquet(out)
    assert o.rows == len(scored) == 1797
    assert set(scored["model_name"]) == {NAME} and set(scored["model_version"]) == {"1"}
    assert set(scored["precision"]) == {"fp32"}
    whole = mlflow.pyfunc.load_model(f"models:/{NAME}/1").predict(
        pd.read_csv(digits_csv).drop(columns=["label"]).astype("float64"))
    assert scored["prediction"].tolist() == list(whole)  # chunking changes nothing
    assert not o.drift.drifted, o.drift.verdict  # the training data itself does not drift
    run = MlflowClient().get_run(o.run_id)
    assert run.data.metrics["predict.rows"] == 1797 and run.data.tags["monitor.drifted"] == "false"
    assert run.data.tags["monitor.model_version"] == "1" and run.data.tags["predict.precision"] == "fp32"
    # The verdict where an operator looks: artifacts of this flow run in the Prefect API.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = {key: client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                            sort=ArtifactSort.CREATED_DESC, limit=1)[0]
                 for key in ("mpops-predict", "mpops-drift", "mpops-monitoring-mlflow-run")}
    assert "**Scored 1797 rows**" in found["mpops-predict"].data and "fp32" in found["mpops-predict"].data
    assert len({a.flow_run_id for a in found.values()}) == 1
    assert f"/runs/{o.run_id}" in found["mpops-monitoring-mlflow-run"].data


PEAK = """
import json, sys, tracemalloc
import mlflow.pyfunc
from pipeline.core.chunks import Reservoir, numeric_features, score_file
model = mlflow.pyfunc.load_model(sys.argv[1])
features = model.metadata.get_input_schema().input_names()
tracemalloc.start()
n = score_file(model.predict, numeric_features(features), sys.argv[2], sys.argv[3], int(sys.argv[4]), "label", {"precision": "fp32"},
               Reservoir(2000))
print(json.dumps({"rows": n, "peak": tracemalloc.get_traced_memory()[1]}))
"""


def test_a_large_file_is_scored_in_bounded_memory(champion, tmp_path, tracking_store):
    """300,000 rows of 64 features are 154 MB as float64; chunks of 10,000 rows must stay far below that."""
    rng = np.random.default_rng(0)
    rows = 300_000
    frame = pd.DataFrame(rng.integers(0, 17, size=(rows, 64)).astype("float64"),
                         columns=[f"pixel_{i}" for i in range(64)])
    frame.to_parquet(tmp_path / "big.parquet", row_group_size=10_000)
    whole_mb = frame.memory_usage(index=False).sum() / 2**20
    del frame
    done = subprocess.run([sys.executable, "-c", PEAK, f"models:/{NAME}/1", str(tmp_path / "big.parquet"),
                           str(tmp_path / "out.parquet"), "10000"], capture_output=True, text=True, timeout=900,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    peak_mb = got["peak"] / 2**20
    assert got["rows"] == rows
    assert whole_mb > 140 and peak_mb < 40, (peak_mb, whole_mb)
    assert len(pd.read_parquet(tmp_path / "out.parquet", columns=["prediction"])) == rows
