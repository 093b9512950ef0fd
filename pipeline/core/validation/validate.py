"""Data validation: the dataset's Great Expectations suite plus mpops' data-quality checks, in one GE run.

The suite under expectations/ is the dataset contract (schema, types, ranges, label set, class
shares; `mpops expectations init` writes one). The checks whose thresholds live in the config
(labels, imbalance, leakage, target leakage, label errors, PII) are appended to it as custom
expectations (pipeline.core.validation.expectations), so every result lands in one GE validation result, one
report and one Data Docs page.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.core import strict_json
from pipeline.core.config import DataConfig, ValidationConfig
from pipeline.core.data import SPLIT_COLUMN, assign_split
from pipeline.core.errors import ConfigError, DataValidationError
from pipeline.core.validation.redact import listed, redact_results, suite_values
from pipeline.core.validation.report import offline_data_docs


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    observed: str
    threshold: str
    message: str
    warning: str | None = None
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ValidationReport:
    suite: str
    rows: int
    checks: tuple[CheckResult, ...]
    # (frame index, given label, suggested label, label quality): written to label_issues.csv
    label_suspects: tuple[tuple, ...] = field(default=(), repr=False)
    data_docs_html: str = field(default="", repr=False)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.passed)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(c.warning for c in self.checks if c.warning)

    def to_json(self) -> str:
        return strict_json.dumps({"suite": self.suite, "rows": self.rows, "passed": self.passed,
                           "failed": [c.name for c in self.failed], "warnings": list(self.warnings),
                           "label_suspects": len(self.label_suspects),
                           "checks": [asdict(c) for c in self.checks]}, indent=2, default=str)

    def summary(self) -> str:
        """One line for the model card."""
        status = "passed" if self.passed else f"FAILED ({', '.join(c.name for c in self.failed)})"
        return (f"{status}: {len(self.checks)} checks of suite {self.suite} on {self.rows} rows, "
                f"{len(self.warnings)} warning(s), {len(self.label_suspects)} suspected label error(s)")

    def raise_if_failed(self, where: str = "") -> None:
        if self.passed:
            return
        names = ", ".join(dict.fromkeys(c.name for c in self.failed))
        raise DataValidationError(
            f"data validation failed: {len(self.failed)} of {len(self.checks)} checks ({names}); "
            f"fix the data or the suite {self.suite}" + (f"; report in {where}" if where else ""),
            detail="\n".join(f"  {c.message}" for c in self.failed),
        )


def load_suite(path: str | Path, extra: list[dict] | None = None) -> Any:
    """Read a suite JSON (plus `extra` expectations); refuse one that GE would load with some silently dropped."""
    import great_expectations as gx

    import pipeline.core.validation.expectations  # noqa: F401  registers mpops' types before GE parses the suite

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"validation suite not found: {p}; set validation.suite or run `mpops expectations init`")
    try:
        raw = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"validation suite {p} is not valid JSON: {e}") from None
    expected = [*raw.get("expectations", []), *(extra or [])]
    try:
        suite = gx.ExpectationSuite(name=raw.get("name", p.stem), expectations=expected, meta=raw.get("meta", {}))
    except Exception as e:  # GE raises its own error types for an unknown or malformed expectation
        raise ConfigError(f"validation suite {p} cannot be loaded: {str(e).splitlines()[0]}") from None
    if len(suite.expectations) != len(expected):
        raise ConfigError(
            f"validation suite {p}: {len(expected)} expectations in the file but {len(suite.expectations)} "
            "loaded; an expectation type is unknown to Great Expectations"
        )
    return suite


def quality_expectations(v: ValidationConfig, label_column: str, seed: int,
                         known: frozenset[str] = frozenset(), categorical: tuple[str, ...] = ()) -> list[dict]:
    """The config-driven checks, as GE expectation configurations appended to the dataset's suite.

    `known`: the text values the suite names; the checks that print class names show only those."""
    common = {"label_column": label_column, "split_column": SPLIT_COLUMN}
    names = {"known_values": sorted(known)}
    label_errors = [{"type": "expect_label_error_rate_to_be_below",
                     "kwargs": {**common, **names, "max_rate": v.max_label_error_rate,
                                "max_rows": v.label_error_max_rows, "folds": v.label_error_folds, "seed": seed,
                                "warn_fraction": v.warn_fraction}}]
    expectations = [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": label_column}},
        {"type": "expect_table_values_to_be_finite", "kwargs": common},
        {"type": "expect_features_to_be_numeric_or_declared",
         "kwargs": {**common, "categorical_columns": list(categorical)}},
        {"type": "expect_label_classes_to_have_min_count",
         "kwargs": {"label_column": label_column, **names, "min_count": v.min_class_count}},
        {"type": "expect_class_imbalance_to_be_within",
         "kwargs": {"label_column": label_column, **names, "max_ratio": v.max_imbalance_ratio,
                    "min_share": v.min_class_share, "warn_fraction": v.warn_fraction}},
        {"type": "expect_no_train_test_leakage", "kwargs": {**common, "max_test_overlap": v.max_test_overlap}},
        {"type": "expect_no_conflicting_duplicates",
         "kwargs": {**common, "max_conflicting_rows": v.max_conflicting_rows}},
        {"type": "expect_no_target_leakage", "kwargs": {**common, "max_score": v.max_target_leakage}},
        *(label_errors if v.label_errors else []),
        {"type": "expect_no_pii", "kwargs": {"split_column": SPLIT_COLUMN, "fail_on_pii": v.fail_on_pii}},
    ]
    for e in expectations:  # the Data Docs show the description in place of the raw type and kwargs
        e["description"] = _describe(e["type"], e["kwargs"])
    return expectations


def _describe(kind: str, kw: dict) -> str:
    texts = {
        "expect_table_values_to_be_finite": "non-finite values: no ±inf in any numeric feature",
        "expect_features_to_be_numeric_or_declared": "feature types: every feature numeric or declared categorical",
        "expect_label_classes_to_have_min_count": f"labels: at least 2 classes, each with {kw.get('min_count')}+ rows",
        "expect_class_imbalance_to_be_within": f"class imbalance: majority/minority at most {kw.get('max_ratio')}, "
                                               f"smallest class share at least {kw.get('min_share')}",
        "expect_no_train_test_leakage": f"train-test leakage: at most {kw.get('max_test_overlap')} of test rows "
                                        "may also occur in train (row hashes)",
        "expect_no_conflicting_duplicates": f"conflicting duplicates: at most {kw.get('max_conflicting_rows')} rows "
                                            "with identical features and different labels",
        "expect_no_target_leakage": f"target leakage: no single feature predicts the label with balanced "
                                    f"accuracy {kw.get('max_score')} or more",
        "expect_label_error_rate_to_be_below": f"label errors: cleanlab's estimated mislabelled share at most "
                                               f"{kw.get('max_rate')}",
        "expect_no_pii": "pii: no e-mail, phone, card or national-ID pattern in any text column",
    }
    return texts.get(kind, f"{kw.get('column')}: values not null")


def _named_values(suite_path: str | Path) -> frozenset[str]:
    """The suite's value sets, read ahead of load_suite (which reports an unreadable file)."""
    try:
        return suite_values(json.loads(Path(suite_path).read_text()).get("expectations", []))
    except (OSError, ValueError, AttributeError):
        return frozenset()


def _check_name(config: Any) -> str:
    from pipeline.core.validation.expectations import CHECK_NAMES  # imports Great Expectations: seconds

    if config.type in CHECK_NAMES:
        return CHECK_NAMES[config.type]
    kind = config.type.removeprefix("expect_").replace("_", " ")
    column = config.kwargs.get("column")
    return f"{column}: {kind}" if column else kind


def _short(text: Any, limit: int = 200) -> str:
    s = str(text)
    return s if len(s) <= limit else s[:limit] + "..."


def _threshold(config: Any) -> str:
    from pipeline.core.validation.expectations import CHECK_NAMES

    kwargs = dict(config.kwargs)
    if config.type in CHECK_NAMES:  # GE leaves a value equal to its default out of the result's kwargs
        expectation = config.to_domain_obj()
        kwargs = {k: getattr(expectation, k) for k in type(expectation).success_keys}
    return _short(", ".join(f"{k}={v}" for k, v in kwargs.items()
                            if k not in ("column", "batch_id", "label_column", "split_column")))


def _check(r: Any, known: frozenset[str]) -> CheckResult:
    cfg, result = r.expectation_config, dict(r.result or {})
    name = _check_name(cfg)
    threshold = _threshold(cfg)
    if r.exception_info and r.exception_info.get("raised_exception"):
        observed = f"could not be evaluated: {r.exception_info.get('exception_message')}"
        return CheckResult(name, False, observed, threshold, f"{name}: {observed}")
    details = dict(result.get("details") or {})
    if "message" in details:
        message, warning = details.pop("message"), details.pop("warning", None)
        details.pop("suspects", None)
        return CheckResult(name, bool(r.success), str(result.get("observed_value")), threshold, message,
                           warning, details)
    mismatched = details.get("mismatched")
    if mismatched:
        observed = "; ".join(f"{k} columns {_short(v, 120)}" for k, v in mismatched.items() if v)
    elif "unexpected_count" in result:
        sample = listed(result.get("partial_unexpected_list", [])[:5], known)
        observed = f"{result['unexpected_count']} rows unexpected, e.g. {sample}"
    else:
        observed = _short(result.get("observed_value", "n/a"))
    return CheckResult(name, bool(r.success), observed, threshold, f"{name}: {observed}; expected {threshold}")


def validate_frame(frame: pd.DataFrame, suite_path: str | Path, v: ValidationConfig | None = None,
                   data: DataConfig | None = None) -> ValidationReport:
    """Validate the rows as training will split them: the data's `split` column, else the configured split."""
    v, data = v or ValidationConfig(), data or DataConfig()
    frame = frame.assign(**{SPLIT_COLUMN: assign_split(frame, data.label_column, data.test_size, data.split_seed)})
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    known = _named_values(suite_path)
    suite = load_suite(suite_path, quality_expectations(v, data.label_column, data.split_seed, known,
                                                           data.categorical_columns))
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("mpops").add_dataframe_asset("input")
             .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame}))
    result = batch.validate(suite, result_format="SUMMARY")
    from pipeline.core.validation.expectations import CHECK_NAMES

    redact_results(result, known, own_types=CHECK_NAMES)  # before any report, page or message is made of it
    suspects = next((tuple(tuple(s) for s in (r.result or {}).get("details", {}).get("suspects", []))
                     for r in result.results if r.expectation_config.type == "expect_label_error_rate_to_be_below"),
                    ())
    skipped = () if v.label_errors else (CheckResult(
        "label errors", True, "skipped", "validation.label_errors=false",
        "label errors: skipped", warning="label errors: not checked (validation.label_errors is false)"),)
    return ValidationReport(suite=str(suite_path), rows=len(frame),
                            checks=tuple(_check(r, known) for r in result.results) + skipped,
                            label_suspects=suspects, data_docs_html=offline_data_docs(result))

