"""`mpops init` in a user's own folder: three files, the command that runs them, no overwriting unless told."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.core.config_load import load_config
from pipeline.core.provenance import collect_provenance, dvc_hash
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration]
MPOPS = str(Path(sys.executable).with_name("mpops"))


def init(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MPOPS, "init", *args], cwd=folder, capture_output=True, text=True, timeout=300)


@pytest.fixture()
def folder(tmp_path) -> Path:
    from sklearn.datasets import load_breast_cancer

    table = load_breast_cancer(as_frame=True)
    frame = table.data.iloc[:, :6]
    frame["diagnosis"] = [str(table.target_names[t]) for t in table.target]
    (tmp_path / "raw").mkdir()
    frame.to_csv(tmp_path / "raw" / "cells.csv", index=False)
    return tmp_path


def test_init_writes_config_suite_and_pointer_and_refuses_to_overwrite(folder):
    r = init(folder, "--data", "raw/cells.csv", "--name", "cells", "--label", "diagnosis")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "run it: mpops run --config cells.yaml"
    cfg = load_config(folder / "cells.yaml")
    assert (cfg.data.path, cfg.data.label_column) == ("raw/cells.csv", "diagnosis")
    assert (cfg.validation.suite, cfg.registry.model_name) == ("expectations/cells.json", "cells")
    suite = json.loads((folder / "expectations" / "cells.json").read_text())
    columns = {e["kwargs"].get("column") for e in suite["expectations"]}
    assert {"mean radius", "diagnosis"} <= columns
    [out] = yaml.safe_load((folder / "raw" / "cells.csv.dvc").read_text())["outs"]
    assert out["md5"] == dvc_hash(folder / "raw" / "cells.csv") and out["path"] == "cells.csv"
    assert out["size"] == (folder / "raw" / "cells.csv").stat().st_size
    prov = collect_provenance(folder, (str(folder / "raw" / "cells.csv"),), folder / "raw" / "cells.csv")
    assert prov.data_is_pinned and prov.dvc_md5 == out["md5"]  # a run on it is data.pinned

    before = (folder / "cells.yaml").read_text()
    again = init(folder, "--data", "raw/cells.csv", "--name", "cells", "--label", "diagnosis")
    assert again.returncode == 2
    assert again.stderr.startswith("error: ") and "already exist; pass --force to overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and (folder / "cells.yaml").read_text() == before
    frame = pd.read_csv(folder / "raw" / "cells.csv")
    frame.iloc[:100].to_csv(folder / "raw" / "cells.csv", index=False)
    forced = init(folder, "--data", "raw/cells.csv", "--name", "cells", "--label", "diagnosis", "--force")
    assert forced.returncode == 0, forced.stderr
    assert yaml.safe_load((folder / "raw" / "cells.csv.dvc").read_text())["outs"][0]["md5"] != out["md5"]


@pytest.mark.parametrize("args, code, says", [
    (["--name", "cells", "--label", "nope"], 3, "label column 'nope' missing"),
    (["--name", "../cells", "--label", "diagnosis"], 2, "--name '../cells': use letters"),
])
def test_init_refuses_bad_input_and_writes_nothing(folder, args, code, says):
    r = init(folder, "--data", "raw/cells.csv", *args)
    assert r.returncode == code and r.stderr.startswith("error: ") and says in r.stderr, r.stderr
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == ["cells.csv"]


def test_the_breast_cancer_example_writes_the_data_its_pointer_pins(tmp_path):
    example = ROOT / "examples" / "breast-cancer"
    subprocess.run([sys.executable, str(example / "make_data.py")], check=True, capture_output=True, timeout=120)
    data = example / "data" / "breast_cancer.csv"
    [out] = yaml.safe_load((example / "data" / "breast_cancer.csv.dvc").read_text())["outs"]
    assert dvc_hash(data) == out["md5"]
    frame = pd.read_csv(data)
    assert frame.shape == (569, 31) and set(frame["diagnosis"]) == {"malignant", "benign"}
    cfg = load_config(example / "mpops.yaml")
    assert cfg.train.model == f"{example / 'model.py'}:build" and cfg.registry.model_name != "digits-classifier"
