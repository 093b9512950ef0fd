"""A factory model trains like a zoo one, and its bundle reads back without the user's file."""
from __future__ import annotations

import shutil

import torch

from pipeline.core.config import TrainConfig
from pipeline.core.data import load_dataset, split_dataset
from pipeline.core.evaluate import predict_indices
from pipeline.core.train import train
from pipeline.tracking.bundle import read_bundle, write_bundle
from tests.conftest import ROOT

TINY = ROOT / "tests" / "integration" / "factories" / "tiny_mlp.py"


def test_a_factory_model_trains_and_its_bundle_carries_its_source(digits_csv, tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    shutil.copy(TINY, user / "my_model.py")
    split = split_dataset(load_dataset(digits_csv), 0.2, 0)
    cfg = TrainConfig(model=f"{user / 'my_model.py'}:build", model_params={"width": 24}, epochs=3, batch_size=128,
                      checkpoint_every=0)
    r = train(split, cfg, "fp32", device=torch.device("cpu"))
    assert r.model[1][0].out_features == 24 and r.spec.flops == 2 * (64 * 24 + 24 * 10)
    folder = write_bundle(tmp_path / "bundle", r.model, "fp32", r.spec, split.feature_columns, split.classes)
    shutil.rmtree(user)  # the bundle must not need the user's folder
    bundle = read_bundle(folder, device="cpu")
    assert bundle.spec.kind == "code/my_model.py:build" and (folder / "code" / "my_model.py").is_file()
    assert (predict_indices(bundle.model, split.x_test, bundle.policy)
            == predict_indices(r.model, split.x_test, r.policy)).all()


def test_a_package_factory_that_is_not_installed_travels_in_the_bundle(digits_csv, tmp_path, monkeypatch):
    import subprocess
    import sys

    package = tmp_path / "src" / "userpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copy(TINY, package / "nets.py")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    split = split_dataset(load_dataset(digits_csv), 0.2, 0)
    cfg = TrainConfig(model="userpkg.nets:build", model_params={"width": 8}, epochs=1, batch_size=256,
                      checkpoint_every=0)
    r = train(split, cfg, "fp32", device=torch.device("cpu"))
    folder = write_bundle(tmp_path / "bundle", r.model, "fp32", r.spec, split.feature_columns, split.classes)
    assert (folder / "code" / "userpkg" / "nets.py").is_file()
    shutil.rmtree(tmp_path / "src")
    code = ("import sys; from pipeline.tracking.bundle import read_bundle; b = read_bundle(sys.argv[1], 'cpu'); "
            "print(b.spec.kind, sys.modules['userpkg.nets'].__file__)")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["userpkg.nets:build", str(folder / "code" / "userpkg" / "nets.py")]
