import json
import re

import numpy as np
import pandas as pd
import pytest

from pipeline.core.config import DataConfig, ValidationConfig
from pipeline.core.errors import ConfigError, DataValidationError
from pipeline.core.validation.suite import infer_suite, write_suite
from pipeline.core.validation.report import write_report
from pipeline.core.validation.validate import load_suite, quality_expectations, validate_frame
from tests.conftest import ROOT

SUITE = ROOT / "expectations" / "digits.json"


@pytest.fixture(scope="module")
def clean_report(digits_frame):
    return validate_frame(digits_frame, SUITE)


def test_clean_digits_pass_every_check_without_warnings(clean_report):
    assert clean_report.passed, clean_report.failed
    assert clean_report.warnings == ()
    n_suite = len(json.loads(SUITE.read_text())["expectations"])
    assert len(clean_report.checks) == n_suite + len(quality_expectations(ValidationConfig(), "label", 0))


def test_report_files_hold_every_check_and_need_no_network(clean_report, tmp_path):
    paths = write_report(clean_report, tmp_path)
    report = json.loads(paths["report"].read_text())
    assert len(report["checks"]) == len(clean_report.checks)
    leakage = next(c for c in report["checks"] if c["name"] == "train-test leakage")
    assert leakage["passed"] and "max_test_overlap=0.0" in leakage["threshold"]
    page = paths["data_docs"].read_text()
    assert "train-test leakage: at most 0.0 of test rows" in page and "pixel_63" in page  # custom and built-in
    assert not re.search(r"https?://", page), "the Data Docs page would load something from the network"
    rows = paths["label_issues"].read_text().splitlines()
    assert rows[0] == "row,given_label,suggested_label,label_quality"
    assert len(rows) - 1 == len(clean_report.label_suspects)


@pytest.mark.parametrize("mutate, check", [
    (lambda f: f.__setitem__("label", f["label"].where(f.index != 3, 12)), "label: column values to be in set"),
    (lambda f: f.__setitem__("pixel_5", f["pixel_5"].astype(float).where(f.index != 7, 99.0)),
     "pixel_5: column values to be between"),
    (lambda f: f.__setitem__("pixel_9", f["pixel_9"].astype(float).where(f.index != 1, np.nan)),
     "pixel_9: column values to not be null"),
    (lambda f: f.__setitem__("pixel_2", "dark"), "pixel_2: column values to be in type list"),
    (lambda f: f.drop(columns=["pixel_63"], inplace=True), "table columns to match set"),
])
def test_each_broken_check_is_named(digits_frame, mutate, check):
    frame = digits_frame.copy()
    mutate(frame)
    report = validate_frame(frame, SUITE)
    assert check in [c.name for c in report.failed]
    with pytest.raises(DataValidationError, match="data validation failed") as err:
        report.raise_if_failed()
    assert check in str(err.value)
    assert any(line.strip().startswith(check) for line in err.value.detail.splitlines())


def test_leakage_line_reads_as_documented(digits_frame):
    frame = digits_frame.assign(split=["test" if i % 5 == 0 else "train" for i in range(len(digits_frame))])
    test_rows = np.flatnonzero(frame.split == "test")[:54]
    frame.iloc[test_rows, :65] = frame.iloc[np.flatnonzero(frame.split == "train")[:54], :65].to_numpy()
    [failed] = validate_frame(frame, SUITE).failed
    assert failed.message == "train-test leakage: 54 of 360 test rows also in train (15.0%), threshold 0.0%"


def test_near_threshold_imbalance_warns_but_passes(digits_frame):
    keep = (digits_frame.label != 0) | (digits_frame.groupby("label").cumcount() < 21)  # ratio 183/21 = 8.7
    report = validate_frame(digits_frame[keep], SUITE, ValidationConfig(max_imbalance_ratio=10.0, min_class_share=0.01))
    imbalance = next(c for c in report.checks if c.name == "class imbalance")
    assert imbalance.passed and imbalance.warning and "ratio 8.7" in imbalance.warning
    assert report.warnings == (imbalance.warning,)


def test_label_error_check_subsamples_and_says_so(digits_frame):
    report = validate_frame(digits_frame, SUITE, ValidationConfig(label_error_max_rows=600))
    check = next(c for c in report.checks if c.name == "label errors")
    assert "random subsample of 600 of 1797 rows" in check.message
    assert check.detail["subsampled"] is True and check.detail["rows_checked"] == 600


def test_thresholds_come_from_the_config(digits_frame):
    strict = ValidationConfig(min_class_count=200)  # every digit class has fewer than 200 rows
    report = validate_frame(digits_frame, SUITE, strict)
    assert [c.name for c in report.failed] == ["labels"]


def test_the_configured_split_is_the_one_checked(digits_frame):
    """Without a split column, the leakage check sees exactly the split training will use."""
    from pipeline.core.data import Dataset, split_dataset

    doubled = pd.concat([digits_frame, digits_frame.iloc[:100]], ignore_index=True)  # 100 exact duplicates
    data = DataConfig(test_size=0.25, split_seed=3)
    check = next(c for c in validate_frame(doubled, SUITE, data=data).checks if c.name == "train-test leakage")
    sp = split_dataset(Dataset(doubled, ("x",), "label"), data.test_size, data.split_seed)
    train_rows = {r.tobytes() for r in sp.x_train}
    leaked = sum(r.tobytes() in train_rows for r in sp.x_test)
    assert leaked > 0 and check.detail["test_in_train"] == leaked and check.detail["test_rows"] == len(sp.x_test)


def test_unknown_expectation_type_fails_loudly(tmp_path):
    raw = json.loads(SUITE.read_text())
    raw["expectations"].append({"type": "expect_column_to_be_magic", "kwargs": {"column": "label"}})
    bad = tmp_path / "suite.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="suite"):
        load_suite(bad)


def test_custom_expectations_load_from_json(tmp_path):
    """GE would drop an unregistered type with a log line; ours load because validate registers them first."""
    path = tmp_path / "custom.json"
    path.write_text(json.dumps({"name": "custom", "expectations": quality_expectations(ValidationConfig(), "y", 0)}))
    assert len(load_suite(path).expectations) == len(quality_expectations(ValidationConfig(), "y", 0))


def test_init_writes_a_suite_the_reference_passes(digits_frame, tmp_path):
    suite = infer_suite(digits_frame, "digits-copy", "label", "digits.csv")
    path = write_suite(suite, tmp_path)
    assert path.name == "digits-copy.json"
    types = [e["type"] for e in suite["expectations"]]
    assert types.count("expect_column_values_to_be_between") == 64
    assert "expect_column_kl_divergence_to_be_less_than" in types
    report = validate_frame(digits_frame, path)
    assert report.passed, [c.message for c in report.failed]
    shifted = digits_frame.assign(pixel_0=digits_frame.pixel_0 + 1)  # pixel_0 is 0 in every reference row
    assert "pixel_0: column values to be between" in [c.name for c in validate_frame(shifted, path).failed]


def test_init_refuses_to_overwrite_and_refuses_text_features(digits_frame, tmp_path):
    suite = infer_suite(digits_frame, "d", "label", "digits.csv")
    write_suite(suite, tmp_path)
    with pytest.raises(ConfigError, match="--force"):
        write_suite(suite, tmp_path)
    with pytest.raises(DataValidationError, match="not numeric"):
        infer_suite(digits_frame.assign(note="x"), "d", "label", "digits.csv")
    with pytest.raises(ConfigError, match="suite name"):
        write_suite({**suite, "name": "../evil"}, tmp_path)
