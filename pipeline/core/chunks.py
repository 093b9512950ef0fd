"""Scoring a file of any size in bounded memory: read, score and write it a chunk of rows at a time, keeping
only a bounded uniform sample of its rows for the drift monitor.

Memory is a few chunks plus the sample, whatever the file's length: CSV through pandas' chunked reader,
Parquet through pyarrow's record batches, the output appended chunk by chunk.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from pipeline.core.drift import names_list
from pipeline.core.errors import DataValidationError

SUFFIXES = (".csv", ".parquet", ".pq")


def input_files(path: str | Path) -> list[Path]:
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in SUFFIXES) if p.is_dir() else [p]
    if not p.exists() or not files or any(f.suffix.lower() not in SUFFIXES for f in files):
        raise DataValidationError(f"predict: {p} is not a .csv or .parquet file, nor a folder holding some")
    return files


def iter_frames(path: str | Path, rows: int) -> Iterator[pd.DataFrame]:
    """The input's rows, `rows` at a time, file after file."""
    for f in input_files(path):
        if f.suffix.lower() == ".csv":
            with pd.read_csv(f, chunksize=rows) as reader:
                yield from reader
        else:
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(f).iter_batches(batch_size=rows):
                yield batch.to_pandas()


def feature_matrix(frame: pd.DataFrame, features: list[str], where: str) -> np.ndarray:
    """The feature columns as float64; missing, non-numeric or non-finite features are a DataValidationError."""
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise DataValidationError(f"predict: {where} lacks feature columns the model needs: {names_list(missing, 5)}")
    feats = frame[features]
    text = [c for c in features if not pd.api.types.is_numeric_dtype(feats[c]) or pd.api.types.is_bool_dtype(feats[c])]
    if text:  # counted, never quoted: a text cell may be PII
        raise DataValidationError(f"predict: {where} has non-numeric feature values in {names_list(text, 5)} "
                                  "(values not shown)")
    x = feats.to_numpy(dtype=np.float64)
    if not np.isfinite(x).all():
        raise DataValidationError(f"predict: {where} has {int((~np.isfinite(x)).sum())} missing or infinite "
                                  "feature values; fix or drop those rows")
    return x


class Reservoir:
    """A uniform sample of at most `size` rows of a stream: each row gets a random key, the smallest keys stay."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size, self.rng = size, np.random.default_rng(seed)
        self.keys, self.x, self.labels = np.zeros(0), None, None

    def add(self, x: np.ndarray, labels: pd.Series | None) -> None:
        keys = np.concatenate([self.keys, self.rng.random(len(x))])
        xs = x if self.x is None else np.concatenate([self.x, x])
        lab = None if labels is None else (labels.reset_index(drop=True) if self.labels is None else
                                           pd.concat([self.labels, labels], ignore_index=True))
        keep = np.sort(np.argpartition(keys, self.size - 1)[:self.size]) if len(keys) > self.size else \
            np.arange(len(keys))
        self.keys, self.x = keys[keep], xs[keep]
        self.labels = None if lab is None else lab.iloc[keep].reset_index(drop=True)


class ChunkWriter:
    """Appends frames to a CSV or Parquet file; the first frame fixes the columns and, for Parquet, the schema."""

    def __init__(self, path: str | Path) -> None:
        self.path, self.rows, self._parquet = Path(path), 0, None
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, frame: pd.DataFrame) -> None:
        if self.path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table.cast(self._parquet.schema))
        else:
            frame.to_csv(self.path, mode="w" if self.rows == 0 else "a", header=self.rows == 0, index=False)
        self.rows += len(frame)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()


Prepare = Callable[[pd.DataFrame, str], tuple[pd.DataFrame, np.ndarray]]


def numeric_features(features: list[str]) -> Prepare:
    """A chunk's model input and drift rows when every feature is a number: the same float64 matrix."""
    def prepare(frame: pd.DataFrame, where: str) -> tuple[pd.DataFrame, np.ndarray]:
        x = feature_matrix(frame, features, where)
        return pd.DataFrame(x, columns=features), x
    return prepare


def score_file(predict: Callable[[pd.DataFrame], Any], prepare: Prepare, input_path: str, output_path: str,
               chunk_rows: int, label_column: str, columns: dict[str, Any], sample: Reservoir) -> int:
    """Write every input row with a `prediction` column and the constant `columns` (model name, version,
    precision); `prepare` turns a chunk into the model's input and the drift monitor's rows, of which
    `sample` keeps a bounded share. Returns the number of rows scored."""
    writer = ChunkWriter(output_path)
    try:
        for n, frame in enumerate(iter_frames(input_path, chunk_rows)):
            inputs, x = prepare(frame, f"{input_path} (chunk {n + 1})")
            frame["prediction"] = predict(inputs)
            for name, value in columns.items():
                frame[name] = value
            sample.add(x, frame[label_column] if label_column in frame.columns else None)
            writer.write(frame)
    finally:
        writer.close()
    if writer.rows == 0:
        raise DataValidationError(f"predict: {input_path} holds no rows")
    return writer.rows
