"""Every case of the broken-data corpus through `mpops run`: exit 3, the check named, nothing trained or registered."""
from __future__ import annotations

import json
import logging

import pytest
from mlflow import MlflowClient

from tests.conftest import run_in_process
from tests.data.corpus import CASES, PLANTED_PII, pii_in_many_columns

pytestmark = pytest.mark.integration

FAST = ["--precisions", "fp32", "--set", "train.epochs=1", "--set", "train.hidden_size=32"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_data_stops_the_run(case, digits_frame, tmp_path, tracking_store, prefect_harness, monkeypatch):
    data = case.build(digits_frame, tmp_path)
    reports = tmp_path / "reports"
    code, _, err = run_in_process(["run", "--data", str(data), "--set", f"validation.report_dir={reports}", *FAST],
                        monkeypatch)
    assert code == 3, err
    assert err.startswith("error: ") and sum(line.startswith("error: ") for line in err.splitlines()) == 1, err
    assert case.check in err, err
    assert "Traceback" not in err

    client = MlflowClient()
    assert client.search_registered_models() == []
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert all(r.info.status == "FAILED" for r in runs)
    assert not [r for r in runs if "mlflow.parentRunId" in r.data.tags], "a precision was trained"
    if reports.exists():  # the suite ran: its report is on disk and in the parent run, failing or not
        report = json.loads((reports / "report.json").read_text())
        assert case.check in report["failed"] or any(case.check in c["message"] for c in report["checks"]
                                                     if not c["passed"])
        [parent] = runs
        assert parent.data.tags["validation.passed"] == "false"
        logged = {a.path for a in client.list_artifacts(parent.info.run_id, "validation")}
        assert {"validation/report.json", "validation/data_docs.html", "validation/label_issues.csv"} <= logged


def test_pii_values_never_reach_the_output(digits_frame, tmp_path, monkeypatch):
    data = next(c for c in CASES if c.name == "an e-mail column").build(digits_frame, tmp_path)
    reports = tmp_path / "reports"
    code, out, err = run_in_process(["validate", "--data", str(data), "--set", f"validation.report_dir={reports}"], monkeypatch)
    assert code == 3
    assert "column 'contact': 1797 e-mail addresses" in err
    written = "".join(p.read_text() for p in reports.iterdir())
    assert "@example.org" not in err + out + written


class _Everything(logging.Handler):
    """Every log record of the process, formatted with its traceback: what any log sink could receive."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_planted_pii_leaves_the_process_nowhere(digits_frame, tmp_path, tracking_store, prefect_harness,
                                                monkeypatch):
    """E-mail addresses and card numbers in five columns: not in stdout, stderr, any log record, any file the
    run wrote (reports, the MLflow store) nor any MLflow artifact, tag or param."""
    (tmp_path / "input").mkdir()
    data = pii_in_many_columns(digits_frame, tmp_path / "input")
    out_dir = tmp_path / "out"
    sink = _Everything()
    loggers = [logging.getLogger(n) for n in ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "mlflow")]
    for logger in loggers:
        logger.addHandler(sink)
    try:
        code, out, err = run_in_process(["run", "--data", str(data), "--set", f"validation.report_dir={out_dir / 'reports'}",
                               *FAST], monkeypatch)
    finally:
        for logger in loggers:
            logger.removeHandler(sink)
    assert code == 3, err
    assert "pii: column 'pixel_3': 2 card numbers; column 'pixel_12': 1 e-mail addresses" in err
    assert "e.g. ['0', '1', '2', <text withheld, 22 chars>, '4']" in err  # suite-named labels shown, others not
    assert "pixel_40: column values to be between: 1 rows unexpected, e.g. [<number withheld" in err

    client = MlflowClient()
    seen = [out, err, *sink.lines]
    for run in client.search_runs([e.experiment_id for e in client.search_experiments()]):
        seen += [json.dumps(run.data.to_dictionary())]
        client.download_artifacts(run.info.run_id, "", str(out_dir / "artifacts" / run.info.run_id))
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != data]
    assert any(p.name == "data_docs.html" for p in files) and any(p.name == "mlflow.db" for p in files)
    for value in PLANTED_PII:
        assert not [text[:200] for text in seen if value in text], value
        assert not [p for p in files if value.encode() in p.read_bytes()], value


def test_clean_data_passes_without_warnings(digits_csv, tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    code, out, err = run_in_process(["validate", "--data", str(digits_csv), "--set", f"validation.report_dir={reports}"],
                          monkeypatch)
    assert code == 0, err
    assert "data validation passed" in out and "0 warning(s)" in out
    assert "warning" not in err
    report = json.loads((reports / "report.json").read_text())
    assert report["passed"] and report["warnings"] == []
    assert {c["name"] for c in report["checks"]} >= {"labels", "class imbalance", "train-test leakage",
                                                       "conflicting duplicates", "target leakage", "label errors",
                                                       "pii", "non-finite values"}
