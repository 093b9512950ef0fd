"""A corpus of broken datasets built from the digits set: one case per validation check.

Each case writes one file and names the check that must fail (as it appears in the report and
on stderr). Built in code, not stored, so the corpus follows the digits set and stays small in git.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from pipeline.core.data import assign_split


@dataclass(frozen=True)
class Case:
    name: str
    check: str  # the check named on the failure line
    build: Callable[[pd.DataFrame, Path], Path]


def _csv(frame: pd.DataFrame, folder: Path, name: str = "data.csv") -> Path:
    path = folder / name
    frame.to_csv(path, index=False)
    return path


def _rows(frame: pd.DataFrame, share: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice(len(frame), int(share * len(frame)), replace=False)


def labels_out_of_set(f, d):
    f = f.copy()
    f.loc[_rows(f, 0.01), "label"] = 11
    return _csv(f, d)


def null_labels(f, d):
    f = f.copy().astype({"label": "float64"})
    f.loc[_rows(f, 0.01), "label"] = np.nan
    return _csv(f, d)


def single_class(f, d):
    return _csv(f[f.label == 3], d)


def severe_imbalance(f, d):
    keep = (f.label != 0) | (f.groupby("label").cumcount() < 12)  # 12 zeros against ~180 of each other digit
    return _csv(f[keep], d)


def flipped_labels(f, d):
    f = f.copy()
    rows = _rows(f, 0.2)
    f.loc[rows, "label"] = (f.loc[rows, "label"] + np.random.default_rng(1).integers(1, 10, len(rows))) % 10
    return _csv(f, d)


def train_rows_in_test(f, d):
    """15% of the test rows replaced by copies of train rows (features and label)."""
    f = f.copy()
    f["split"] = assign_split(f, "label", 0.2, 0).to_numpy()
    test, train = np.flatnonzero(f.split == "test"), np.flatnonzero(f.split == "train")
    n = int(0.15 * len(test))
    copies = f.iloc[train[:n]].drop(columns="split").to_numpy()
    f.iloc[test[:n], : copies.shape[1]] = copies
    return _csv(f, d)


def feature_is_label(f, d):
    return _csv(f.assign(pixel_0=f.label), d)


def email_column(f, d):
    return _csv(f.assign(contact=[f"user{i}@example.org" for i in range(len(f))]), d)


# Planted by pii_in_many_columns; none may appear in any output (Luhn-valid test card numbers).
PLANTED_PII = ("alice.leak@example.org", "bob.leak@example.org", "carol.leak@example.org", "dave.leak@example.org",
               "4111 1111 1111 1111", "5500-0000-0000-0004", "4012888888881881", "4556737586899855")


def pii_in_many_columns(f, d):
    """E-mail addresses and card numbers in the label, two features, the split column and an extra text column,
    and a card number as an integer in a numeric feature: every place a cell value could be quoted from."""
    f = f.astype({"label": object, "pixel_3": object, "pixel_12": object}).assign(
        notes="", split=np.where(np.arange(len(f)) % 5 == 0, "test", "train"))
    f.loc[[3, 50], "label"] = PLANTED_PII[0]
    f.loc[[7, 70], "pixel_3"] = PLANTED_PII[4]
    f.loc[[9], "pixel_12"] = PLANTED_PII[1]
    f.loc[[1, 2], "notes"] = f"{PLANTED_PII[2]} {PLANTED_PII[5]}"
    f.loc[[4], "notes"] = PLANTED_PII[6]
    f.loc[[11], "split"] = PLANTED_PII[3]
    f.loc[[13], "pixel_40"] = int(PLANTED_PII[7])
    return _csv(f, d)


def nan_features(f, d):
    f = f.copy().astype({"pixel_9": "float64"})
    f.loc[_rows(f, 0.02), "pixel_9"] = np.nan
    return _csv(f, d)


def out_of_range(f, d):
    f = f.copy()
    f.loc[_rows(f, 0.01), "pixel_5"] = 99
    return _csv(f, d)


def infinite_values(f, d):
    f = f.copy().astype({"pixel_20": "float64"})
    f.loc[_rows(f, 0.01), "pixel_20"] = np.inf
    return _csv(f, d)


def conflicting_duplicates(f, d):
    """Ten rows repeated with another label: the same image, two answers."""
    dup = f.iloc[:10].copy()
    dup["label"] = (dup["label"] + 1) % 10
    return _csv(pd.concat([f, dup], ignore_index=True), d)


def empty_file(f, d):
    return _csv(f.iloc[:0], d)


def not_csv(f, d):
    path = d / "data.txt"
    path.write_text("this is not a dataset\n")
    return path


def binary_as_csv(f, d):
    path = d / "data.csv"
    path.write_bytes(bytes(range(256)) * 4)
    return path


CASES = [
    Case("labels out of set", "label: column values to be in set", labels_out_of_set),
    Case("null labels", "label: column values to not be null", null_labels),
    Case("single class", "labels", single_class),
    Case("severe imbalance", "class imbalance", severe_imbalance),
    Case("20% flipped labels", "label errors", flipped_labels),
    Case("train rows copied into test", "train-test leakage", train_rows_in_test),
    Case("a feature equal to the label", "target leakage", feature_is_label),
    Case("an e-mail column", "pii", email_column),
    Case("NaNs", "pixel_9: column values to not be null", nan_features),
    Case("out-of-range values", "pixel_5: column values to be between", out_of_range),
    Case("infinite values", "non-finite values", infinite_values),
    Case("conflicting duplicates", "conflicting duplicates", conflicting_duplicates),
    # Unreadable input fails before the suite runs: the named "check" is the loader's message.
    Case("an empty file", "holds no rows", empty_file),
    Case("a non-CSV file", "is not a .csv or .parquet file", not_csv),
    Case("binary bytes named .csv", "cannot read", binary_as_csv),
]
