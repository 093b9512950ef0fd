"""mpops' custom Great Expectations expectations: labels, imbalance, leakage, label errors, PII.

Importing this module registers them with GE; pipeline.core.validation.validate imports it before it reads a
suite, because GE drops an unknown expectation type from a JSON suite with only a log line.
Each expectation's result carries `details.message` (the line a person reads) and
`details.warning` (set when the value is near its threshold); the numbers come from
pipeline.core.validation.checks.
"""
from __future__ import annotations

import math
from typing import Any, Callable, ClassVar, Tuple

from great_expectations.core.metric_domain_types import MetricDomainTypes
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import BatchExpectation
from great_expectations.expectations.metrics.metric_provider import metric_value
from great_expectations.expectations.metrics.table_metric_provider import TableMetricProvider

from pipeline.core.validation import checks
from pipeline.core.validation.redact import shown


def _table_metric(name: str, keys: tuple[str, ...], compute: Callable[..., Any]) -> type:
    """A pandas table metric computed by `compute(frame, **value_kwargs)`; GE computes each once per batch."""

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, runtime_configuration):
        frame, _, _ = execution_engine.get_compute_domain(metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE)
        return compute(frame, **{k: metric_value_kwargs[k] for k in keys})

    cls_name = "".join(part.title() for part in name.replace(".", "_").split("_"))
    return type(cls_name, (TableMetricProvider,), {"metric_name": name, "value_keys": keys, "_pandas": _pandas})


_table_metric("mpops.class_counts", ("label_column",), lambda f, label_column: checks.class_counts(f[label_column]))
_table_metric("mpops.nonfinite", ("label_column", "split_column"),
              lambda f, label_column, split_column: checks.nonfinite_counts(
                  f, checks.feature_columns(f, label_column, split_column)))
_table_metric("mpops.duplicates", ("label_column", "split_column"), checks.duplicates)
_table_metric("mpops.target_leakage", ("label_column", "split_column", "max_bins"), checks.target_leakage)
_table_metric("mpops.label_issues", ("label_column", "split_column", "max_rows", "folds", "seed"),
              checks.label_issues)
_table_metric("mpops.pii", ("split_column",), checks.pii_scan)
_table_metric("mpops.undeclared_text", ("label_column", "split_column", "categorical_columns"),
              checks.undeclared_text_columns)


def _result(success: bool, observed: Any, message: str, warning: str | None = None, **details: Any) -> dict:
    if hasattr(observed, "item"):  # GE's renderers take Python numbers only, not numpy scalars
        observed = observed.item()
    return {"success": bool(success),
            "result": {"observed_value": observed, "details": {"message": message, "warning": warning, **details}}}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


class _MpopsExpectation(BatchExpectation):
    label_column: str = "label"
    split_column: str = "split"
    # The text values the suite names (pipeline.core.validation.redact): a class name outside them is withheld.
    known_values: list = []
    check_name: ClassVar[str] = ""

    def _name(self, value: Any) -> str:
        return str(shown(value, frozenset(self.known_values)))


class ExpectTableValuesToBeFinite(_MpopsExpectation):
    """No ±inf in any numeric feature column (NaN is a null, counted by the not-null expectations)."""

    check_name: ClassVar[str] = "non-finite values"
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("mpops.nonfinite",)
    success_keys: ClassVar[Tuple[str, ...]] = ("label_column", "split_column")

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        bad = metrics["mpops.nonfinite"]
        total = sum(bad.values())
        where = ", ".join(f"{c} ({n})" for c, n in list(bad.items())[:10])
        return _result(total == 0, total, f"{self.check_name}: {total} infinite values" + (f" in {where}" if bad else ""),
                       columns=bad)


class ExpectFeaturesToBeNumericOrDeclared(_MpopsExpectation):
    """A feature column is numeric, or declared in data.categorical_columns (then one-hot encoded)."""

    check_name: ClassVar[str] = "feature types"
    categorical_columns: list = []
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("mpops.undeclared_text",)
    success_keys: ClassVar[Tuple[str, ...]] = ("label_column", "split_column", "categorical_columns")

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        bad = metrics["mpops.undeclared_text"]
        if not bad:
            return _result(True, 0, "feature types: every feature column is numeric or a declared categorical one")
        message = (f"feature types: non-numeric column(s) {bad[:10]} not declared in data.categorical_columns; "
                   "declare them to one-hot encode them, or drop them")
        return _result(False, len(bad), message, columns=bad)


class ExpectLabelClassesToHaveMinCount(_MpopsExpectation):
    check_name: ClassVar[str] = "labels"
    min_count: int = 10
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("mpops.class_counts",)
    success_keys: ClassVar[Tuple[str, ...]] = ("label_column", "min_count")

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        counts = {self._name(k): n for k, n in metrics["mpops.class_counts"].items()}
        if len(counts) < 2:
            return _result(False, len(counts), f"labels: {len(counts)} class(es) in column {self.label_column!r}; "
                           "training needs at least 2", counts=counts)
        small = {k: v for k, v in counts.items() if v < self.min_count}
        message = (f"labels: {len(small)} class(es) with fewer than {self.min_count} rows: "
                   + ", ".join(f"{k} ({v})" for k, v in list(small.items())[:10])) if small else \
            f"labels: {len(counts)} classes, the smallest with {min(counts.values())} rows, minimum {self.min_count}"
        return _result(not small, min(counts.values()), message, counts=counts)


class ExpectClassImbalanceToBeWithin(_MpopsExpectation):
    check_name: ClassVar[str] = "class imbalance"
    max_ratio: float = 10.0
    min_share: float = 0.02
    warn_fraction: float = 0.8
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("mpops.class_counts",)
    success_keys: ClassVar[Tuple[str, ...]] = ("label_column", "max_ratio", "min_share", "warn_fraction")

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        counts = metrics["mpops.class_counts"]
        if len(counts) < 2:
            return _result(False, None, "class imbalance: not evaluated, fewer than 2 classes")
        (major, n_major), (minor, n_minor) = max(counts.items(), key=lambda kv: kv[1]), \
            min(counts.items(), key=lambda kv: kv[1])
        ratio, share = n_major / n_minor, n_minor / sum(counts.values())
        message = (f"class imbalance: majority/minority ratio {ratio:.1f} (class {self._name(major)}: {n_major} "
                   f"rows, class {self._name(minor)}: {n_minor} rows), threshold {self.max_ratio:g}; smallest class "
                   f"share {_pct(share)}, threshold {_pct(self.min_share)}")
        near = ratio > self.warn_fraction * self.max_ratio or share < self.min_share / self.warn_fraction
        passed = ratio <= self.max_ratio and share >= self.min_share
        return _result(passed, round(ratio, 4), message, warning=message if passed and near else None,
                       ratio=ratio, min_share=share)


class ExpectNoTrainTestLeakage(_MpopsExpectation):
    check_name: ClassVar[str] = "train-test leakage"
    max_test_overlap: float = 0.0
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("mpops.duplicates",)
    success_keys: ClassVar[Tuple[str, ...]] = ("label_column", "split_column", "max_test_overlap")

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        d = metrics["mpops.duplicates"]
        if d["test_rows"] in (0, d["rows"]):
            return _result(False, None, f"train-test leakage: the split column marks {d['test_rows']} of {d['rows']} "
                           "rows as test; the split column must mark some rows, not all, as test", **d)
        share = d["test_in_train"] / d["test_rows"]
        message = (f"train-test leakage: {d['test_in_train']} of {d['test_rows']} test rows also in train "
                   f"({_pct(share)}), threshold {_pct(self.max_test_overlap)}")
        if d["val_rows"]:
            message += f"; {d['val_in_train']} of {d['val_rows']} val rows also in train"
        return _result(share <= self.max_test_overlap, round(share, 6), message, **d)


class ExpectNoConflictingDuplicates(_MpopsExpectation):
    check_name: ClassVar[str] = "conflicting duplicates"
    max_conflicting_rows: int = 0
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("mpops.duplicates",)
    success_keys: ClassVar[Tuple[str, ...]] = ("label_column", "split_column", "max_conflicting_rows")

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        d = metrics["mpops.duplicates"]
        message = (f"conflicting duplicates: {d['conflicting_rows']} rows in {d['conflicting_groups']} groups of "
                   f"identical features with different labels, threshold {self.max_conflicting_rows}; "
                   f"{d['duplicate_rows']} rows have an exact duplicate")
        return _result(d["conflicting_rows"] <= self.max_conflicting_rows, d["conflicting_rows"], message, **d)


class ExpectNoTargetLeakage(_MpopsExpectation):
    check_name: ClassVar[str] = "target leakage"
    max_score: float = 0.95
    max_bins: int = 32
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("mpops.target_leakage",)
    success_keys: ClassVar[Tuple[str, ...]] = ("label_column", "split_column", "max_score", "max_bins")

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        t = metrics["mpops.target_leakage"]
        if t["best_feature"] is None:
            return _result(False, None, "target leakage: not evaluated (needs labelled train and test rows of "
                           "2+ classes and a numeric feature)")
        message = (f"target leakage: feature {t['best_feature']!r} alone predicts the label with balanced accuracy "
                   f"{t['best_score']:.3f} (chance {t['chance']:.3f}), threshold {self.max_score:.3f}")
        return _result(t["best_score"] < self.max_score, round(t["best_score"], 4), message, scores=t["scores"])


class ExpectLabelErrorRateToBeBelow(_MpopsExpectation):
    check_name: ClassVar[str] = "label errors"
    max_rate: float = 0.05
    max_rows: int = 20000
    folds: int = 5
    seed: int = 0
    warn_fraction: float = 0.8
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("mpops.label_issues",)
    success_keys: ClassVar[Tuple[str, ...]] = ("label_column", "split_column", "max_rate", "max_rows", "folds",
                                               "seed", "warn_fraction")

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        r = metrics["mpops.label_issues"]
        if math.isnan(r["rate"]):
            return _result(False, None, f"label errors: not evaluated, {r['not_evaluated']}", **r)
        sample = (f" on a random subsample of {r['rows_checked']} of {r['rows_total']} rows"
                  if r["subsampled"] else "")
        message = (f"label errors: an estimated {_pct(r['rate'])} of rows are mislabelled{sample} "
                   f"({r['flagged']} flagged by cleanlab), threshold {_pct(self.max_rate)}")
        passed = r["rate"] <= self.max_rate
        near = passed and r["rate"] > self.warn_fraction * self.max_rate
        known = frozenset(self.known_values)
        suspects = [[row, shown(given, known), shown(suggested, known), quality]
                    for row, given, suggested, quality in r["suspects"]]
        return _result(passed, round(r["rate"], 6), message, warning=message if near else None,
                       **{**r, "suspects": suspects})


class ExpectNoPii(_MpopsExpectation):
    check_name: ClassVar[str] = "pii"
    fail_on_pii: bool = True
    metric_dependencies: ClassVar[Tuple[str, ...]] = ("mpops.pii",)
    success_keys: ClassVar[Tuple[str, ...]] = ("split_column", "fail_on_pii")

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        found = metrics["mpops.pii"]
        total = sum(sum(kinds.values()) for kinds in found.values())
        if not found:
            return _result(True, 0, "pii: no e-mail, phone, card or national-ID patterns in any text column")
        where = "; ".join(f"column {col!r}: " + ", ".join(f"{n} {kind}" + ("es" if kind.endswith("ss") else "s")
                                                           for kind, n in kinds.items())
                          for col, kinds in found.items())
        message = f"pii: {where}; PII must not reach training, artifacts or the registry (values not shown)"
        return _result(not self.fail_on_pii, total, message, warning=None if self.fail_on_pii else message,
                       columns=found)


# GE names an expectation type by its class name in snake case (ExpectNoPii -> expect_no_pii).
CHECK_NAMES = {cls.expectation_type: cls.check_name for cls in _MpopsExpectation.__subclasses__()}
