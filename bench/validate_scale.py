"""Rows per second of data validation on synthetic data of 100k and 1M rows x 64 features.

    .venv/bin/python bench/validate_scale.py [--sizes 100000,1000000]

Measures, in one run: the full suite (the dataset's suite from `infer_suite` plus every data-quality
check except label errors), the leakage hashing alone, and the cleanlab label-error check on 100k
rows (subsampled above validation.label_error_max_rows, as the report says). The ratios compare the
largest size with the smallest: 1.0 means time grows exactly with the rows. Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import pandas as pd

from pipeline.core.validation import checks
from pipeline.core.config import ValidationConfig
from pipeline.core.data import assign_split
from pipeline.core.project import disable_telemetry
from pipeline.core.validation.suite import infer_suite, write_suite
from pipeline.core.validation.validate import validate_frame


def synthetic(rows: int, features: int = 64, classes: int = 10, seed: int = 0) -> pd.DataFrame:
    """Integer features and labels that depend on them, so the label-error check has signal to work with."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 17, size=(rows, features), dtype=np.int64)
    weights = rng.normal(size=(features, classes))
    logits = (x - 8) @ weights + rng.gumbel(size=(rows, classes)) * 4
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(features)])
    frame["label"] = logits.argmax(axis=1)
    return frame


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    args = parser.parse_args()
    disable_telemetry()
    sizes = [int(s) for s in args.sizes.split(",")]
    no_label_errors = ValidationConfig(label_errors=False)
    figures: dict[str, float | int | bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        suite = write_suite(infer_suite(synthetic(20_000, seed=1), "synthetic", "label", "synthetic"), tmp)
        for rows in sizes:
            frame = synthetic(rows)
            report, seconds = timed(validate_frame, frame, suite, no_label_errors)
            split = frame.assign(split=assign_split(frame, "label", 0.2, 0))
            _, hash_seconds = timed(checks.duplicates, split, "label", "split")
            print(f"{rows:>9,} rows: full suite without label errors {seconds:6.1f} s ({rows / seconds:,.0f} rows/s), "
                  f"{len(report.checks)} checks, passed {report.passed}; leakage hashing {hash_seconds:.2f} s")
            figures[f"suite_s_{rows}"] = round(seconds, 2)
            figures[f"suite_rows_per_s_{rows}"] = round(rows / seconds)
            figures[f"leakage_s_{rows}"] = round(hash_seconds, 3)
        small, large = sizes[0], sizes[-1]
        growth = large / small
        figures["suite_time_growth_per_row_growth"] = round(figures[f"suite_s_{large}"] / figures[f"suite_s_{small}"] / growth, 2)
        figures["leakage_time_growth_per_row_growth"] = round(figures[f"leakage_s_{large}"] / figures[f"leakage_s_{small}"] / growth, 2)
        frame = synthetic(100_000).assign(split="train")
        cfg = ValidationConfig()
        result, seconds = timed(checks.label_issues, frame, "label", "split", cfg.label_error_max_rows,
                                cfg.label_error_folds, 0)
        print(f"  100,000 rows: label errors {seconds:.1f} s ({100_000 / seconds:,.0f} rows/s), checked "
              f"{result['rows_checked']:,} rows (subsampled: {result['subsampled']}), estimated rate {result['rate']:.3f}")
        figures.update({"label_errors_s_100000": round(seconds, 2), "label_errors_rows_per_s": round(100_000 / seconds),
                        "label_errors_rows_checked": result["rows_checked"], "label_errors_subsampled": result["subsampled"]})
        figures["target_1m_under_30s"] = figures.get("suite_s_1000000", float("inf")) < 30
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
