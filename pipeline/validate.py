"""Data validation with a Great Expectations suite stored under expectations/.

Each expectation becomes one named `CheckResult`; later checks (leakage, label errors, PII)
add expectations to the suite and so land in the same report.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import ConfigError, DataValidationError


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    observed: str
    expected: str


@dataclass(frozen=True)
class ValidationReport:
    suite: str
    rows: int
    checks: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def to_json(self) -> str:
        return json.dumps({"suite": self.suite, "rows": self.rows, "passed": self.passed,
                           "checks": [asdict(c) for c in self.checks]}, indent=2)

    def raise_if_failed(self) -> None:
        if self.passed:
            return
        names = "; ".join(f"{c.name} ({c.observed})" for c in self.failed)
        raise DataValidationError(
            f"data validation failed, {len(self.failed)} of {len(self.checks)} checks: {names}; "
            f"fix the data or the suite {self.suite}",
            detail="\n".join(f"  FAILED {c.name}: observed {c.observed}; expected {c.expected}" for c in self.failed),
        )


def load_suite(path: str | Path) -> Any:
    """Read a suite JSON; refuse one that GE would load with expectations silently dropped."""
    import great_expectations as gx

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"validation suite not found: {p}; set validation.suite")
    try:
        raw = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"validation suite {p} is not valid JSON: {e}") from None
    try:
        suite = gx.ExpectationSuite(name=raw.get("name", p.stem), expectations=raw.get("expectations", []),
                                    meta=raw.get("meta", {}))
    except Exception as e:  # GE raises its own error types for an unknown or malformed expectation
        raise ConfigError(f"validation suite {p} cannot be loaded: {str(e).splitlines()[0]}") from None
    if len(suite.expectations) != len(raw.get("expectations", [])):
        raise ConfigError(
            f"validation suite {p}: {len(raw['expectations'])} expectations in the file but "
            f"{len(suite.expectations)} loaded; an expectation type is unknown to Great Expectations"
        )
    return suite


def _check_name(config: Any) -> str:
    kind = config.type.removeprefix("expect_").replace("_", " ")
    column = config.kwargs.get("column")
    return f"{column}: {kind}" if column else kind


def _describe(result: dict[str, Any], kwargs: dict[str, Any]) -> tuple[str, str]:
    if "unexpected_count" in result:
        sample = result.get("partial_unexpected_list", [])[:5]
        observed = f"{result['unexpected_count']} rows unexpected, e.g. {sample}"
    else:
        observed = str(result.get("observed_value", "")) or "n/a"
        if len(observed) > 200:
            observed = observed[:200] + "..."
    expected = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k not in ("column", "batch_id"))
    return observed, (expected[:200] + "...") if len(expected) > 200 else expected


def validate_frame(frame: pd.DataFrame, suite_path: str | Path) -> ValidationReport:
    """Run the suite on the data; the optional `split` column is checked by the split stage."""
    frame = frame.drop(columns=["split"], errors="ignore")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    suite = load_suite(suite_path)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("mpops").add_dataframe_asset("input")
             .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame}))
    result = batch.validate(suite, result_format="SUMMARY")
    checks = []
    for r in result.results:
        cfg = r.expectation_config
        observed, expected = _describe(r.result or {}, cfg.kwargs)
        if r.exception_info and r.exception_info.get("raised_exception"):
            observed = f"could not be evaluated: {r.exception_info.get('exception_message')}"
        checks.append(CheckResult(_check_name(cfg), bool(r.success), observed, expected))
    return ValidationReport(suite=str(suite_path), rows=len(frame), checks=tuple(checks))
