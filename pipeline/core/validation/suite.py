"""`mpops expectations init`: a dataset's Great Expectations suite inferred from a trusted reference file.

Like TFX's SchemaGen: the reference fixes the schema (columns and types), each feature's range,
the label set and the class shares. The user reviews the JSON and commits it under expectations/.
The data-quality thresholds (imbalance, leakage, label errors, PII) are not written here: they
live in the config and apply to every suite.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from pipeline.core.data import SPLIT_COLUMN
from pipeline.core.errors import ConfigError, DataValidationError

# The dtypes GE's pandas engine reports for numeric columns; a CSV with a gap turns int64 into float64.
NUMERIC_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64", "Int64", "Float64"]
CLASS_SHARE_KL_THRESHOLD = 0.1  # nats; a batch whose class mix moved further than this is not the same data


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _feature_expectations(frame: pd.DataFrame, column: str) -> list[dict]:
    values = frame[column]
    return [
        {"type": "expect_column_values_to_be_in_type_list", "kwargs": {"column": column, "type_list": NUMERIC_TYPES}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": column}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": column, "min_value": _plain(values.min()), "max_value": _plain(values.max())}},
    ]


def _label_expectations(labels: pd.Series) -> list[dict]:
    shares = labels.value_counts(normalize=True).sort_index()
    values = [_plain(v) for v in shares.index]
    return [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": labels.name, "value_set": values}},
        {"type": "expect_column_kl_divergence_to_be_less_than",
         "kwargs": {"column": labels.name, "threshold": CLASS_SHARE_KL_THRESHOLD,
                    "partition_object": {"values": values, "weights": [round(float(w), 6) for w in shares]}}},
    ]


def _categorical_expectations(frame: pd.DataFrame, column: str) -> list[dict]:
    values = sorted({_plain(v) for v in frame[column].dropna()}, key=str)
    return [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": column}},
            {"type": "expect_column_distinct_values_to_be_in_set", "kwargs": {"column": column, "value_set": values}}]


def infer_suite(frame: pd.DataFrame, name: str, label_column: str, source: str,
                categorical: tuple[str, ...] = ()) -> dict:
    """The suite JSON for data shaped like `frame`: every current column expected, nothing else.

    A declared categorical column gets its set of categories (as text) instead of a type and a range."""
    if label_column not in frame.columns:
        raise DataValidationError(f"data: label column {label_column!r} missing from {source}; "
                                  "pass --label or set data.label_column")
    features = [c for c in frame.columns if c not in (label_column, SPLIT_COLUMN)]
    text = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c]) and c not in categorical]
    if text:
        raise DataValidationError(f"data: columns {text[:5]} of {source} are not numeric; declare them in "
                                  "data.categorical_columns to one-hot encode them, or drop them")
    if frame[label_column].isna().any() or frame[features].isna().any().any():
        raise DataValidationError(f"data: {source} has missing values; a reference file must be complete")
    expectations = [
        {"type": "expect_table_columns_to_match_set",
         "kwargs": {"column_set": [*features, label_column, SPLIT_COLUMN], "exact_match": True}},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        *[e for c in features for e in (_categorical_expectations(frame, c) if c in categorical
                                        else _feature_expectations(frame, c))],
        *_label_expectations(frame[label_column]),
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": SPLIT_COLUMN, "value_set": ["train", "val", "test"]}},
    ]
    return {"name": name, "meta": {"generated_by": "mpops expectations init", "reference": source,
                                   "reference_rows": len(frame), "label_column": label_column,
                                   "review": "check the ranges and the label set before committing"},
            "expectations": expectations}


def write_suite(suite: dict, folder: str | Path, force: bool = False) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", suite["name"]):
        raise ConfigError(f"suite name {suite['name']!r}: use letters, digits, '-', '_' or '.' (it names the file)")
    target = Path(folder) / f"{suite['name']}.json"
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; review and edit it, or pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(suite, indent=1) + "\n")
    return target
