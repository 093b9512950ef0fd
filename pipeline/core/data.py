"""Load a dataset (CSV/Parquet file or folder, `.npz` arrays, an image folder) and split it.

Every kind becomes the same table: one float column per network input and the label column, so
validation, training, the gate, the registry, predict and monitor treat them alike. Image folders
also keep a per-image manifest (pipeline/core/images.py) for their own validation and drift checks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from pipeline.core import images
from pipeline.core.encoding import CategoricalEncoder
from pipeline.core.errors import DataValidationError
from pipeline.core.factory import InputSpec

if TYPE_CHECKING:
    from pipeline.core.config import DataConfig

SPLIT_COLUMN = "split"
SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class Dataset:
    frame: pd.DataFrame
    files: tuple[str, ...]
    label_column: str
    categorical_columns: tuple[str, ...] = ()  # declared in the config and present in the data
    image_shape: tuple[int, int, int] | None = None  # (channels, height, width) of images or image-shaped arrays
    manifest: pd.DataFrame | None = field(default=None, repr=False)  # image folders: one row per file

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
    feature_columns: tuple[str, ...]  # the network's inputs (after one-hot encoding)
    encoder: CategoricalEncoder | None = None  # set when the data has categorical columns
    image_shape: tuple[int, int, int] | None = None
    # Image folders: per-image statistics of the training rows, the drift reference (pipeline/core/images.py).
    monitor_x_train: np.ndarray | None = field(default=None, repr=False)
    monitor_columns: tuple[str, ...] = ()

    @property
    def input_spec(self) -> InputSpec:
        c, h, w = self.image_shape or (None, None, None)
        return InputSpec(int(self.x_train.shape[1]), c, h, w)

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The columns a caller gives the registered model (before encoding)."""
        return self.encoder.input_columns if self.encoder is not None else self.feature_columns


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


def load_data(path: str | Path, data: DataConfig, require_label: bool = True,
              image_shape: tuple[int, int, int] | None = None) -> Dataset:
    """Any kind of data by its path: an `.npz` file, an image folder, else CSV/Parquet.

    `image_shape` (channels, height, width) overrides the config's for images: a model's own at scoring time."""
    p = Path(path)
    if p.suffix.lower() == ".npz":
        return load_arrays(p, data.label_column, require_label)
    if images.is_image_folder(p):
        shape = image_shape or (data.image_channels, *data.image_size)
        frame, manifest, files = images.load_image_folder(p, data.label_column, shape, require_label)
        return Dataset(frame, files, data.label_column, image_shape=tuple(shape), manifest=manifest)
    ds = load_dataset(p, data.label_column, require_label)
    declared = tuple(c for c in data.categorical_columns if c in ds.frame.columns)
    return Dataset(ds.frame, ds.files, ds.label_column, categorical_columns=declared)


def load_arrays(path: Path, label_column: str = "label", require_label: bool = True) -> Dataset:
    """`x` (n, ...) flattened to n rows of features `x_0..`; `y` (n,) the labels. (n, C, H, W) or (n, H, W)
    arrays keep their image shape, so an image model can unflatten them."""
    if not path.is_file():
        raise DataValidationError(f"data: {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as arrays:  # no pickled objects: data, never code
            x = arrays["x"] if "x" in arrays else None
            y = arrays["y"] if "y" in arrays else None
    except Exception as e:  # numpy raises several types for a damaged archive
        raise DataValidationError(f"data: cannot read {path} ({type(e).__name__}); give an .npz with arrays x and y")
    if x is None or (require_label and y is None):
        raise DataValidationError(f"data: {path} lacks array {'x' if x is None else 'y'}; an .npz needs x (n, ...) "
                                  "and y (n,)")
    if not np.issubdtype(x.dtype, np.number) or x.ndim < 2 or len(x) == 0:
        raise DataValidationError(f"data: {path}: x must be a numeric array of shape (n, ...) with n > 0, "
                                  f"got {x.dtype} {x.shape}")
    frame = pd.DataFrame(x.reshape(len(x), -1).astype(np.float32),
                         columns=[f"x_{i}" for i in range(int(np.prod(x.shape[1:])))])
    if y is not None:
        if y.shape != (len(x),):
            raise DataValidationError(f"data: {path}: y must have shape ({len(x)},) to match x, got {y.shape}")
        frame[label_column] = y
    shape = (1, *x.shape[1:]) if x.ndim == 3 else tuple(x.shape[1:]) if x.ndim == 4 else None
    return Dataset(frame, (str(path),), label_column, image_shape=shape)


def split_dataset(ds: Dataset, test_size: float, seed: int) -> Split:
    """The data's own `split` column when present (val counts as train), else a stratified split.

    Categorical columns are one-hot encoded by an encoder fitted on all rows' categories (the label is
    not involved, so this leaks nothing about the test labels)."""
    frame = ds.frame
    features = list(ds.feature_columns)
    classes = tuple(sorted(frame[ds.label_column].unique().tolist()))
    index = {c: i for i, c in enumerate(classes)}
    y = frame[ds.label_column].map(index).to_numpy(dtype=np.int64)
    encoder = CategoricalEncoder.fit(frame, tuple(features), ds.categorical_columns) if ds.categorical_columns \
        else None
    x = encoder.transform(frame) if encoder else frame[features].to_numpy(dtype=np.float32)
    is_test = (assign_split(frame, ds.label_column, test_size, seed) == "test").to_numpy()
    if not is_test.any() or is_test.all():
        raise DataValidationError("data: the split column must mark some rows, not all, as test")
    tr, te = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    monitor_x, monitor_columns = None, ()
    if ds.manifest is not None:
        monitor_columns = images.STAT_COLUMNS
        monitor_x = ds.manifest[list(monitor_columns)].to_numpy(np.float64)[tr]
    return Split(x[tr], y[tr], x[te], y[te], classes, encoder.feature_columns if encoder else tuple(features),
                 encoder, ds.image_shape, monitor_x, monitor_columns)


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
