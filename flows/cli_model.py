"""`mpops` commands around the registered model: predict, monitor, restore-data, serve."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from flows.cli_base import ConfigOpt, ModelUriOpt, say, app, out
from flows.common import resolve
from pipeline.core.errors import ConfigError, DriftDetected


@app.command()
def predict(input: str = typer.Option(..., "--input", help="CSV/Parquet of the feature columns"),
            output: str = typer.Option(..., "--output", help="where to write the rows with a prediction column"),
            model_uri: Optional[str] = ModelUriOpt,
            config: Optional[Path] = ConfigOpt) -> None:
    """Score a file with the champion (or --model-uri) in chunks, and check the batch for drift in the same pass."""
    resolve(config)  # a bad config is exit 2 before any server starts
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from flows.predict import predict_flow
    from flows.processes import prefect_api

    with prefect_api():
        o = predict_flow(input, output, model_uri, str(config) if config else None)
    say(f"wrote {o.rows} predictions of {o.model_name} version {o.model_version or '-'} in {o.precision} "
        f"from {o.model_uri} to {output}")
    say(f"drift: {o.drift.verdict} (report {o.report_dir / 'report.md'}, MLflow run {o.run_id})")


@app.command()
def monitor(batch: str = typer.Option(..., "--batch", help="CSV/Parquet of the feature columns (label optional)"),
            retrain: bool = typer.Option(False, "--retrain", help="on drift, start the training flow (default: off)"),
            model_uri: Optional[str] = ModelUriOpt,
            config: Optional[Path] = ConfigOpt,
            set_: list[str] = typer.Option([], "--set", help="override a config key: --set "
                                                             "monitor.psi_threshold=0.3 (default: none)")
            ) -> None:
    """Compare a batch with the champion's training reference; exit 5 on drift."""
    from flows.run_output import print_monitor

    _, cfg = resolve(config, None, None, set_)
    # The champion and its reference are downloaded on every call; progress bars only clutter the verdict.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from flows.monitoring import monitor_flow
    from flows.processes import prefect_api

    try:
        with prefect_api():
            outcome = monitor_flow(batch, retrain, str(config) if config else None, set_, model_uri)
    except DriftDetected as e:
        print_monitor(out, batch, e.outcome, cfg.monitor.experiment)
        raise
    print_monitor(out, batch, outcome, cfg.monitor.experiment)


@app.command("restore-data")
def restore_data() -> None:
    """Restore data/ as pinned by data.dvc: dvc pull, else rebuild and verify against data.dvc."""
    from pipeline.core.bundled import restore_bundled_data
    from pipeline.core.project import project_root

    say(f"data/: {restore_bundled_data(project_root())}")


@app.command()
def serve() -> None:
    """Run the scheduled deployments of prefect.yaml (nightly retraining, hourly monitoring) in this
    process until stopped, without a work pool or worker; needs a Prefect server (PREFECT_API_URL)."""
    from prefect import serve as prefect_serve
    from prefect.settings import PREFECT_API_URL

    from flows.deployments import held_by_work_pools, served_deployments
    from pipeline.core.project import project_root

    if not PREFECT_API_URL.value():
        # Without a server Prefect falls back to a temporary in-process API whose scheduler never runs.
        raise ConfigError("mpops serve needs a Prefect server for its schedules: start one with "
                          "`prefect server start` and set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
    root = project_root()
    os.chdir(root)  # entrypoints are recorded relative to it, and served runs start in it
    deployments = served_deployments(root)
    taken = held_by_work_pools(deployments)
    if taken:
        raise ConfigError(f"mpops serve: {', '.join(taken)} already on this Prefect server from `prefect deploy`; "
                          "a worker and mpops serve cannot share a deployment: delete it first (prefect deployment "
                          "delete NAME) or serve against another server")
    say(f"serving {', '.join(d.name for d in deployments)} from {root} (Ctrl+C stops)")
    prefect_serve(*deployments)
