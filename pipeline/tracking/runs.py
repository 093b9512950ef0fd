"""MLflow runs: one context manager that always ends its run, and the few ways mpops writes to a run."""
from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Iterator

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from pipeline.tracking import store
from pipeline.tracking.owners import owner_tags

MAX_BATCH = 1000  # MLflow takes at most 1000 metrics a batch


@contextlib.contextmanager
def tracked_run(experiment: str, run_name: str, artifact_location: str | None = None,
                parent_id: str | None = None, tags: dict[str, str] | None = None) -> Iterator[str]:
    """A run that ends FINISHED when the block completes, FAILED when an error leaves it early (a failed
    gate, bad data) and KILLED when the process is stopped (SIGTERM, Ctrl+C). A tracking server that
    stopped answering cannot end it: that raises ServiceUnavailable at once, and the next `mpops run`
    marks the run KILLED (pipeline.tracking.owners)."""
    run_id = start_run(experiment, run_name, artifact_location, parent_id, tags)
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    except Exception as e:
        if store.is_unreachable(e):
            status = None
            raise store.unreachable_error(e) from None
        raise
    except BaseException:
        status = "KILLED"
        store.fail_fast()  # the process is stopping: one short try to say so
        raise
    finally:
        if status:
            _terminate(run_id, status)


def _terminate(run_id: str, status: str) -> None:
    try:
        MlflowClient().set_terminated(run_id, status)
    except Exception as e:
        if not store.is_unreachable(e):
            raise
        if status == "FINISHED":  # the work is done, but MLflow cannot be told so
            raise store.unreachable_error(e) from None
        # Already failing: the error in flight says more; the next `mpops run` marks this run KILLED.


def start_run(experiment: str, run_name: str, artifact_location: str | None,
              parent_id: str | None = None, tags: dict[str, str] | None = None) -> str:
    client = MlflowClient()
    exp_id = _experiment_id(client, experiment, artifact_location)
    all_tags = {"mlflow.runName": run_name, **owner_tags(), **(tags or {})}
    if parent_id:
        all_tags["mlflow.parentRunId"] = parent_id
    return client.create_run(exp_id, tags=all_tags, run_name=run_name).info.run_id


def _experiment_id(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except mlflow.exceptions.MlflowException as e:  # a run started at the same moment created it first
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def log_values(run_id: str, params: dict | None = None, metrics: dict | None = None,
               tags: dict | None = None) -> None:
    """Params, metrics (NaN left out) and tags; metrics in batches MLflow accepts."""
    now = mlflow.utils.time.get_current_time_millis()
    items = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if not math.isnan(float(v))]
    client = MlflowClient()
    client.log_batch(run_id, metrics=items[:MAX_BATCH - 100],
                     params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
                     tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])
    for i in range(MAX_BATCH - 100, len(items), MAX_BATCH):
        client.log_batch(run_id, metrics=items[i:i + MAX_BATCH])


def log_series(run_id: str, name: str, values, start_step: int = 0) -> None:
    """One metric per step (finite values only), e.g. train.grad_norm."""
    now = mlflow.utils.time.get_current_time_millis()
    series = [Metric(name, float(v), now, start_step + i) for i, v in enumerate(values) if math.isfinite(v)]
    for i in range(0, len(series), MAX_BATCH):
        MlflowClient().log_batch(run_id, metrics=series[i:i + MAX_BATCH])


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    MlflowClient().log_text(run_id, text, artifact_file)


def log_artifacts(run_id: str, folder: str | Path, artifact_path: str) -> None:
    MlflowClient().log_artifacts(run_id, str(folder), artifact_path)


@contextlib.contextmanager
def system_metrics(run_id: str, interval_s: float):
    """MLflow's system metrics (system/cpu_utilization_percentage, memory, GPU via pynvml) for the run.

    A sampling thread of MLflow's own: on a 2-core machine it costs a little throughput, so it can be off."""
    if interval_s <= 0:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # 4 INFO lines a training otherwise
    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s)
    monitor.start()
    try:
        yield
    except Exception:
        _stop(monitor)
        raise
    except BaseException:
        store.fail_fast()  # stopped from outside (SIGTERM): no waiting on its daemon thread, nor on a server
        raise
    _stop(monitor)


def _stop(monitor) -> None:
    # Its thread may be waiting out a dead server's retries; stopping it would wait once more and its
    # last flush again: one check (within the budget) first, after which every request fails fast.
    store.reachable()
    monitor.finish()


def run_url(run_id: str) -> str:
    """The run's page: a full URL on a tracking server, the UI's relative route for a local store."""
    run = MlflowClient().get_run(run_id)
    uri = mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.startswith("http") else ""
    return f"{base}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
