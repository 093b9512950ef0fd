import json

import numpy as np
import pytest

from pipeline.errors import ConfigError, DataValidationError
from tests.conftest import ROOT
from pipeline.validate import load_suite, validate_frame

SUITE = ROOT / "expectations" / "digits.json"


def test_clean_digits_pass(digits_frame):
    report = validate_frame(digits_frame, SUITE)
    assert report.passed, report.failed
    assert len(report.checks) == len(json.loads(SUITE.read_text())["expectations"])


@pytest.mark.parametrize("mutate, check", [
    (lambda f: f.__setitem__("label", f["label"].where(f.index != 3, 12)), "label: column values to be in set"),
    (lambda f: f.__setitem__("pixel_5", f["pixel_5"].astype(float).where(f.index != 7, 99.0)),
     "pixel_5: column values to be between"),
    (lambda f: f.__setitem__("pixel_9", f["pixel_9"].astype(float).where(f.index != 1, np.nan)),
     "pixel_9: column values to not be null"),
    (lambda f: f.drop(columns=["pixel_63"], inplace=True), "table columns to match set"),
    (lambda f: f.__setitem__("email", "x"), "table columns to match set"),
])
def test_each_broken_check_is_named(digits_frame, mutate, check):
    frame = digits_frame.copy()
    mutate(frame)
    report = validate_frame(frame, SUITE)
    assert not report.passed
    assert check in [c.name for c in report.failed]
    with pytest.raises(DataValidationError, match="data validation failed") as err:
        report.raise_if_failed()
    assert check in str(err.value)


def test_split_column_is_not_a_schema_error(digits_frame):
    frame = digits_frame.assign(split="train")
    assert validate_frame(frame, SUITE).passed


def test_unknown_expectation_type_fails_loudly(tmp_path):
    raw = json.loads(SUITE.read_text())
    raw["expectations"].append({"type": "expect_column_to_be_magic", "kwargs": {"column": "label"}})
    bad = tmp_path / "suite.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="suite"):
        load_suite(bad)
