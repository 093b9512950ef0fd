"""Reports are strict JSON: a figure that could not be computed is null, which JavaScript's JSON.parse,
jq and Go accept, never NaN or Infinity, which they reject."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipeline.core import drift
from pipeline.core.config import GateConfig, MonitorConfig
from pipeline.core.gate import gate
from pipeline.core.validation.validate import CheckResult, ValidationReport
from tests.unit.test_gate import baseline_pred, cand, labels


def strict(text: str):
    def refuse(constant: str):
        raise AssertionError(f"{constant} in a report: strict JSON parsers reject it")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def uncomputed_gate():
    """FGSM and latency not measured for the candidate: their checks have no value."""
    y = labels()
    base = baseline_pred(y)
    return gate([cand("fp32", y, base), cand("bf16", y, base.copy(), sps=300, fgsm=float("nan"), latency=None)],
                y, GateConfig())


def test_gate_report_writes_null_for_what_could_not_be_computed(uncomputed_gate):
    body = strict(uncomputed_gate.to_json())
    bf16 = next(v for v in body["verdicts"] if v["precision"] == "bf16")
    fgsm = next(c for c in bf16["checks"] if c["key"] == "fgsm_drop")
    assert fgsm["value"] is None and fgsm["passed"] is False


def test_run_report_file_is_strict_json(uncomputed_gate, tmp_path):
    from flows.run_output import write_run_report
    from pipeline.core.errors import GateFailed

    path = tmp_path / "report.json"
    write_run_report(path, error=GateFailed("no candidate passed the gates", report=uncomputed_gate))
    body = strict(path.read_text())
    assert body["exit_code"] == 4 and body["gate"]["verdicts"][1]["precision"] == "bf16"


def test_validation_report_writes_null_for_nan(tmp_path):
    report = ValidationReport("digits", 10, (CheckResult("label errors", True, "nan", "0.05", "not estimated",
                                                         detail={"rate": float("nan"), "rows": np.int64(3),
                                                                 "share": np.float32("inf")}),))
    [check] = strict(report.to_json())["checks"]
    assert check["detail"] == {"rate": None, "rows": 3, "share": None}


def test_drift_report_writes_null_for_nan():
    rng = np.random.default_rng(0)
    x, pred = rng.normal(size=(600, 3)), np.arange(600) % 3
    # A reference whose test accuracy could not be computed (no labelled test rows).
    ref = drift.reference_stats(x, ("a", "b", "c"), (0, 1, 2), "bf16", pred, float("nan"), None, MonitorConfig())
    report = drift.compare(x[:300], ref, MonitorConfig(), pred[:300], y=pred[:300])
    assert math.isnan(report.reference_accuracy)
    body = strict(report.to_json())
    assert body["reference_accuracy"] is None and body["accuracy"] == 1.0
