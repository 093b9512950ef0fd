"""Load a dataset (CSV/Parquet file or folder) and split it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from pipeline.core.errors import DataValidationError

SPLIT_COLUMN = "split"
SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class Dataset:
    frame: pd.DataFrame
    files: tuple[str, ...]
    label_column: str

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.frame.columns if c not in (self.label_column, SPLIT_COLUMN))


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray  # (n_train, n_features) float32
    y_train: np.ndarray  # (n_train,) int64 class indices
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[int | str, ...]  # index -> original label
    feature_columns: tuple[str, ...]


def _read_file(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except Exception as e:  # pandas/pyarrow raise many types for unreadable input
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataValidationError(
            f"data: cannot read {path} ({first}); give a CSV or Parquet file as docs/design.md describes"
        ) from None


def load_dataset(path: str | Path, label_column: str = "label", require_label: bool = True) -> Dataset:
    """Read one file or every CSV/Parquet file of a folder; unreadable or empty data is exit 3.

    `require_label=False` is for scoring, where the label column is optional."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in SUFFIXES)
        if not files:
            raise DataValidationError(f"data: no .csv or .parquet file in folder {p}")
    elif p.is_file():
        if p.suffix.lower() not in SUFFIXES:
            raise DataValidationError(f"data: {p} is not a .csv or .parquet file")
        files = [p]
    else:
        raise DataValidationError(f"data: {p} does not exist; run `make data` for the bundled set or pass --data PATH")
    frame = pd.concat([_read_file(f) for f in files], ignore_index=True)
    if frame.empty:
        raise DataValidationError(f"data: {p} holds no rows")
    if require_label and label_column not in frame.columns:
        raise DataValidationError(
            f"data: label column {label_column!r} missing from {p}; set data.label_column to the label's name"
        )
    return Dataset(frame=frame, files=tuple(str(f) for f in files), label_column=label_column)


def split_dataset(ds: Dataset, test_size: float, seed: int) -> Split:
    """The data's own `split` column when present (val counts as train), else a stratified split."""
    frame = ds.frame
    features = list(ds.feature_columns)
    classes = tuple(sorted(frame[ds.label_column].unique().tolist()))
    index = {c: i for i, c in enumerate(classes)}
    y = frame[ds.label_column].map(index).to_numpy(dtype=np.int64)
    x = frame[features].to_numpy(dtype=np.float32)
    is_test = (assign_split(frame, ds.label_column, test_size, seed) == "test").to_numpy()
    if not is_test.any() or is_test.all():
        raise DataValidationError("data: the split column must mark some rows, not all, as test")
    tr, te = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    return Split(x[tr], y[tr], x[te], y[te], classes, tuple(features))


def assign_split(frame: pd.DataFrame, label_column: str, test_size: float, seed: int) -> pd.Series:
    """`train`/`val`/`test` per row: the data's own `split` column, else the stratified split training uses.

    Validation checks leakage on exactly the split that training will see. Labels that cannot
    stratify (nulls, a class of one row) fall back to an unstratified split: validation reports
    them, and training never starts on such data.
    """
    if SPLIT_COLUMN in frame.columns:
        return frame[SPLIT_COLUMN]
    rows = np.arange(len(frame))
    try:
        _, te = train_test_split(rows, test_size=test_size, random_state=seed, stratify=frame[label_column])
    except (ValueError, TypeError):
        _, te = train_test_split(rows, test_size=test_size, random_state=seed)
    split = np.full(len(frame), "train", dtype=object)
    split[te] = "test"
    return pd.Series(split, index=frame.index, name=SPLIT_COLUMN)
