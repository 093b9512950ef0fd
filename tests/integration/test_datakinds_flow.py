"""End to end per data kind (categorical table, .npz arrays, image folder): run, registry, predict, monitor,
and the registered version scored in a fresh process whose working folder holds no project source."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import _use_store, fresh_store, mpops
from tests.data.image_folders import write_digit_pngs

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# A forced candidate: no probe, cost checks relaxed, a low accuracy floor for tiny trainings.
TINY = ["train.hidden_size=64", "train.hidden_layers=1", "train.epochs=6", "train.batch_size=64", "probe.steps=0",
        "validation.label_errors=false", "gate.min_speedup=0.01", "gate.max_latency_ratio=100",
        "gate.max_memory_ratio=100", "gate.min_accuracy=0.5", "gate.latency_repeats=3"]
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture()
def store(tmp_path, session_store, prefect_harness):
    uri = fresh_store(tmp_path / "mlflow.db")
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    _use_store(uri)
    yield uri
    os.environ["MLFLOW_TRACKING_URI"] = saved or session_store
    _use_store(session_store)


def _sets(tmp_path, name: str, *extra: str) -> list[str]:
    values = [f"validation.report_dir={tmp_path / 'validation'}", f"train.checkpoint_dir={tmp_path / 'ckpt'}",
              f"monitor.report_dir={tmp_path / 'monitor'}", f"registry.model_name={name}", *TINY, *extra]
    return [a for s in values for a in ("--set", s)]


def _score_in_fresh_process(uri: str, name: str, inputs: pd.DataFrame, tmp_path) -> list:
    """The champion loaded by a plain MLflow client, in a folder without the project's source."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    inputs.to_parquet(folder / "in.parquet")
    code = ("import json, mlflow, pandas as pd\n"
            f"m = mlflow.pyfunc.load_model('models:/{name}@champion')\n"
            "print(json.dumps([str(v) for v in m.predict(pd.read_parquet('in.parquet'))]))\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": ""}
    out = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _suite(tmp_path, frame: pd.DataFrame, categorical=()) -> str:
    from pipeline.core.validation.suite import infer_suite

    path = tmp_path / "suite.json"
    path.write_text(json.dumps(infer_suite(frame, "t", "label", "t", categorical)))
    return str(path)


def test_categorical_table_with_spaces_and_string_labels(tmp_path, store, digits_frame):
    rng = np.random.default_rng(0)
    frame = digits_frame.rename(columns=lambda c: c.replace("_", " "))
    frame = frame.assign(scanner=rng.choice(["desk a", "desk b", "phone"], len(frame)),
                         label=frame["label"].map(lambda v: WORDS[v]))
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    sets = _sets(tmp_path, "cat-model", f"validation.suite={_suite(tmp_path, frame, ('scanner',))}",
                 "data.categorical_columns=[scanner]")
    assert mpops("run", "--data", str(path), "--precisions", "fp32,bf16", *sets) == 0
    version = MlflowClient().get_model_version_by_alias("cat-model", "champion")
    assert version.tags["validation.passed"] == "true"
    rows = frame.drop(columns="label").head(20)
    rows = rows.astype({c: "float64" for c in rows.columns if c != "scanner"})  # the signature's types
    scored = _score_in_fresh_process(store, "cat-model", rows, tmp_path)
    assert set(scored) <= set(WORDS) and len(scored) == 20
    assert mpops("predict", "--input", str(path), "--output", str(tmp_path / "p.csv"), "--model-uri",
                  "models:/cat-model@champion") == 0
    pred = pd.read_csv(tmp_path / "p.csv")
    assert (pred["prediction"] == pred["label"]).mean() > 0.8
    # A category training never saw: refused, exit 3, before anything is scored.
    frame.assign(scanner="tablet").head(30).to_csv(tmp_path / "new.csv", index=False)
    assert mpops("predict", "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "q.csv"),
                  "--model-uri", "models:/cat-model@champion") == 3
    assert not (tmp_path / "q.csv").exists()
    assert mpops("monitor", "--batch", str(tmp_path / "new.csv"), *sets) == 3


def test_undeclared_text_column_stops_the_run(tmp_path, store, digits_frame):
    frame = digits_frame.assign(scanner="desk")
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    sets = _sets(tmp_path, "text-model", f"validation.suite={_suite(tmp_path, frame, ('scanner',))}")
    assert mpops("run", "--data", str(path), "--precisions", "fp32", *sets) == 3
    report = json.loads((tmp_path / "validation" / "report.json").read_text())
    assert "feature types" in report["failed"]
    assert any("'scanner'" in c["message"] for c in report["checks"] if c["name"] == "feature types")


def test_npz_arrays(tmp_path, store):
    from sklearn.datasets import load_digits

    d = load_digits()
    np.savez(tmp_path / "d.npz", x=d.images.astype(np.float32), y=d.target)
    from pipeline.core.config import DataConfig
    from pipeline.core.data import load_data

    frame = load_data(tmp_path / "d.npz", DataConfig()).frame
    sets = _sets(tmp_path, "npz-model", f"validation.suite={_suite(tmp_path, frame)}")
    assert mpops("run", "--data", str(tmp_path / "d.npz"), "--precisions", "fp32,bf16", *sets) == 0
    scored = _score_in_fresh_process(store, "npz-model", frame.drop(columns="label").head(50), tmp_path)
    assert np.mean(np.array(scored, dtype=int) == d.target[:50]) > 0.8
    assert mpops("monitor", "--batch", str(tmp_path / "d.npz"), *sets) == 0


def test_image_folder_with_the_zoo_cnn(tmp_path, store):
    from PIL import Image, ImageOps

    root = write_digit_pngs(tmp_path / "img", per_class=40, classes=(0, 1, 2, 3), size=16)
    # monitor.max_accuracy_drop: a tiny model's batch accuracy is noisy; this test is about the image statistics.
    sets = _sets(tmp_path, "img-model", "train.model=cnn", "data.image_size=[16,16]", "data.image_channels=1",
                 "monitor.max_accuracy_drop=0.5")
    assert mpops("run", "--data", str(root), "--precisions", "fp32,bf16", *sets) == 0
    version = MlflowClient().get_model_version_by_alias("img-model", "champion")
    assert version.tags["data.md5"].endswith(".dir")
    batch = write_digit_pngs(tmp_path / "batch", per_class=15, classes=(0, 1, 2, 3), size=16, start=40)
    assert mpops("predict", "--input", str(batch), "--output", str(tmp_path / "p.csv"), "--model-uri",
                  "models:/img-model@champion") == 0
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns)[:3] == ["path", "class", "prediction"] and "precision" in pred.columns
    assert (pred["prediction"] == pred["class"]).mean() > 0.7
    assert mpops("monitor", "--batch", str(batch), *sets) == 0
    dark = tmp_path / "dark"  # inverted images: intensity and contrast shift, the per-image statistics see it
    for path in batch.rglob("*.png"):
        (dark / path.parent.name).mkdir(parents=True, exist_ok=True)
        ImageOps.invert(Image.open(path).convert("L")).save(dark / path.parent.name / path.name)
    assert mpops("monitor", "--batch", str(dark), *sets) == 5
    drift = json.loads((tmp_path / "monitor" / "report.json").read_text())
    assert [f["name"] for f in drift["features"]] == ["width", "height", "mean_intensity", "contrast"]
    assert {f["name"] for f in drift["features"] if f["drifted"]} >= {"mean_intensity"}
    from pipeline.core.config import DataConfig
    from pipeline.core.data import load_data

    pixels = load_data(batch, DataConfig(image_size=(16, 16))).frame.drop(columns="label").head(10)
    assert len(_score_in_fresh_process(store, "img-model", pixels, tmp_path)) == 10
    (batch / "0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert mpops("predict", "--input", str(batch), "--output", str(tmp_path / "q.csv"), "--model-uri",
                  "models:/img-model@champion") == 3
