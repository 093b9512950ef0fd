"""Dataset lineage in MLflow's own terms: the train and test splits as dataset inputs of a run.

MLflow's UI lists them in the run's Datasets panel: name, digest, source and the split as context.
The digest is DVC's hash of the data read (`data.md5`), the one a pinned data.dvc records, so a run
names exactly the data `dvc checkout` brings back. MLflow keeps one input per name and digest in a
run, so each split is a dataset of its own name: `<data>-train`, `<data>-test`; a monitored batch is
`<batch>-monitor` in its monitoring run.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import mlflow.data
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag

from pipeline.core.data import Split

CONTEXT = "mlflow.data.context"  # the tag MLflow's UI shows as a dataset input's context


def split_frames(split: Split, label_column: str) -> dict[str, pd.DataFrame]:
    """The rows each split holds, with their original labels."""
    out = {}
    for name, x, y in (("train", split.x_train, split.y_train), ("test", split.x_test, split.y_test)):
        frame = pd.DataFrame(x, columns=list(split.feature_columns))
        frame[label_column] = [split.classes[i] for i in y]
        out[name] = frame
    return out


def frame_input(frame: pd.DataFrame, source: str, digest: str, context: str, targets: str | None) -> DatasetInput:
    name = f"{Path(source).stem or 'data'}-{context}"
    with warnings.catch_warnings():  # a local path matches two equivalent MLflow source kinds; either will do
        warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*")
        ds = mlflow.data.from_pandas(frame, source=source, targets=targets, name=name, digest=digest)
    return DatasetInput(ds._to_mlflow_entity(), [InputTag(CONTEXT, context)])


def dataset_inputs(split: Split, label_column: str, source: str, digest: str) -> list[DatasetInput]:
    return [frame_input(frame, source, digest, context, label_column)
            for context, frame in split_frames(split, label_column).items()]


def batch_input(x: np.ndarray, feature_columns: tuple[str, ...], source: str, digest: str) -> DatasetInput:
    """A monitored batch, context `monitor`: its feature columns as scored."""
    return frame_input(pd.DataFrame(x, columns=list(feature_columns)), source, digest, "monitor", None)


def log_datasets(run_ids: list[str], inputs: list[DatasetInput]) -> None:
    client = MlflowClient()
    for run_id in run_ids:
        client.log_inputs(run_id, datasets=inputs)
