import hashlib
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from pipeline.core.bundled import write_bundled_digits
from pipeline.core.data import load_dataset, split_dataset
from pipeline.core.errors import DataValidationError


def test_bundled_digits_are_written_deterministically(tmp_path):
    a = write_bundled_digits(tmp_path / "a").read_bytes()
    b = write_bundled_digits(tmp_path / "b").read_bytes()
    assert hashlib.md5(a).hexdigest() == hashlib.md5(b).hexdigest()
    frame = pd.read_csv(tmp_path / "a" / "digits.csv")
    assert frame.shape == (1797, 65)
    assert list(frame.columns[:2]) == ["pixel_0", "pixel_1"] and frame.columns[-1] == "label"


def test_csv_parquet_and_folder(tmp_path, digits_frame):
    digits_frame.iloc[:100].to_csv(tmp_path / "a.csv", index=False)
    digits_frame.iloc[100:150].to_parquet(tmp_path / "b.parquet", index=False)
    assert len(load_dataset(tmp_path / "a.csv").frame) == 100
    assert len(load_dataset(tmp_path / "b.parquet").frame) == 50
    ds = load_dataset(tmp_path)
    assert len(ds.frame) == 150 and len(ds.files) == 2 and len(ds.feature_columns) == 64


@pytest.mark.parametrize("content, suffix, words", [
    ("", ".csv", "cannot read"),
    ("pixel_0,label\n", ".csv", "holds no rows"),
    ("pixel_0,pixel_1\n1,2\n", ".csv", "label column 'label' missing"),
    ("hello", ".txt", "not a .csv or .parquet"),
    ("not parquet at all", ".parquet", "cannot read"),
])
def test_unreadable_data_is_a_validation_error(tmp_path, content, suffix, words):
    p = tmp_path / f"bad{suffix}"
    p.write_text(content)
    with pytest.raises(DataValidationError, match=words):
        load_dataset(p)


def test_label_is_optional_for_scoring(tmp_path):
    (tmp_path / "x.csv").write_text("pixel_0,pixel_1\n1,2\n")
    assert load_dataset(tmp_path / "x.csv", require_label=False).feature_columns == ("pixel_0", "pixel_1")


def test_missing_path(tmp_path):
    with pytest.raises(DataValidationError, match="does not exist"):
        load_dataset(tmp_path / "nothing.csv")


def test_stratified_split_is_deterministic(digits_csv):
    ds = load_dataset(digits_csv)
    a, b = split_dataset(ds, 0.2, 0), split_dataset(ds, 0.2, 0)
    assert np.array_equal(a.y_test, b.y_test) and len(a.y_test) == 360
    assert a.classes == tuple(range(10))
    # stratified: every class is in the test split in proportion
    assert np.bincount(a.y_test).min() >= 34


def test_split_column_is_honoured(tmp_path, digits_frame):
    frame = digits_frame.copy()
    frame["split"] = np.where(np.arange(len(frame)) < 1500, "train", "test")
    frame.to_csv(tmp_path / "s.csv", index=False)
    sp = split_dataset(load_dataset(tmp_path / "s.csv"), 0.2, 0)
    assert len(sp.y_test) == 297 and "split" not in sp.feature_columns


@pytest.fixture()
def dvc_project(tmp_path):
    """A copy of the DVC pointer and config, without data/ or a filled remote: a fresh clone."""
    from tests.conftest import ROOT

    proj = tmp_path / "p"
    proj.mkdir()
    for name in ("data.dvc", "pyproject.toml", ".dvcignore"):
        shutil.copy(ROOT / name, proj / name)
    shutil.copytree(ROOT / ".dvc", proj / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    return proj


@pytest.mark.slow
def test_restore_rebuilds_and_verifies_then_pulls(dvc_project):
    from pipeline.core.bundled import restore_bundled_data

    assert restore_bundled_data(dvc_project).startswith("rebuilt from scikit-learn")
    assert restore_bundled_data(dvc_project).startswith("present")
    shutil.rmtree(dvc_project / "data")
    assert restore_bundled_data(dvc_project).startswith("dvc pull")  # the rebuild was pushed to the remote


@pytest.mark.slow
def test_restore_refuses_data_that_differs(dvc_project):
    from pipeline.core.bundled import restore_bundled_data

    restore_bundled_data(dvc_project)
    with open(dvc_project / "data" / "digits.csv", "a") as fh:
        fh.write("0," * 64 + "3\n")
    with pytest.raises(DataValidationError, match="data/ differs from data.dvc"):
        restore_bundled_data(dvc_project)


@pytest.mark.slow
def test_restore_refuses_a_rebuild_that_does_not_match(dvc_project):
    from pipeline.core.bundled import restore_bundled_data

    pointer = dvc_project / "data.dvc"
    pointer.write_text(pointer.read_text().replace("299f4718bea7d8a0450908337313d810", "0" * 32))
    with pytest.raises(DataValidationError, match="but data.dvc pins 0000"):
        restore_bundled_data(dvc_project)
