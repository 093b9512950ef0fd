"""The monitoring flow: a batch against the champion's stored reference; on drift, optionally retrain."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from flows.training import _user_error_as_state
from pipeline import monitor
from pipeline.config import Config
from pipeline.monitor import Batch, Champion, DriftReport
from pipeline.setup import artifact_location

# The nightly retraining deployment of prefect.yaml; used only when a Prefect server is configured.
RETRAIN_DEPLOYMENT = "mpops-retrain/nightly-retrain"


@dataclass(frozen=True)
class MonitorOutcome:
    report: DriftReport
    model_uri: str
    model_version: str | None
    run_id: str  # the run in the monitoring experiment
    report_dir: Path
    retrain: str | None  # what --retrain did, None when it was not asked for or nothing drifted


@task(name="load-champion", cache_policy=NO_CACHE)
def load_champion(model_uri: str) -> Champion:
    return _user_error_as_state(monitor.load_champion, model_uri)


@task(name="load-batch", cache_policy=NO_CACHE)
def load_batch(cfg: Config, batch_path: str, champion: Champion) -> Batch:
    return _user_error_as_state(monitor.load_batch, batch_path, champion.reference.feature_columns,
                                cfg.data.label_column)


@task(name="monitor-batch", cache_policy=NO_CACHE)
def monitor_batch(cfg: Config, champion: Champion, batch: Batch) -> DriftReport:
    return monitor.monitor_batch(champion, batch, cfg.monitor)


@task(name="write-drift-report", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def write_drift_report(cfg: Config, root: Path, report: DriftReport, champion: Champion, batch: Batch) -> tuple[Path, str]:
    folder = monitor.write_report(report, champion.reference, batch, champion.model_uri,
                                  root / cfg.monitor.report_dir, cfg.monitor.plot_top_k)
    return folder, monitor.log_report(report, champion, batch, folder, cfg.monitor, artifact_location(root))


def _retrain(cfg: Config, root: Path) -> str:
    """A deployment run when a Prefect server has the retraining deployment, else the training flow as a subflow."""
    logger = get_run_logger()
    if os.environ.get("PREFECT_API_URL"):
        from prefect.deployments import run_deployment
        from prefect.exceptions import ObjectNotFound

        try:
            run = run_deployment(name=RETRAIN_DEPLOYMENT, timeout=0)  # timeout=0: start it, do not wait
            return f"started deployment {RETRAIN_DEPLOYMENT}: flow run {run.name} ({run.id})"
        except ObjectNotFound:
            logger.info("no deployment %s on the server: retraining as a subflow", RETRAIN_DEPLOYMENT)
    from flows.training import training_flow

    state = training_flow(cfg, root, return_state=True)
    if not state.is_completed():
        return f"retraining failed: {state.message}"
    reg = state.result().registration
    return f"retrained: registered {reg.model_name} version {reg.version} as {', '.join(reg.aliases)}"


@flow(name="mpops-monitoring", log_prints=True)
def monitor_flow(cfg: Config, root: Path, batch_path: str, retrain: bool = False,
                 model_uri: str | None = None) -> MonitorOutcome | State:
    """`model_uri`: default the champion of registry.model_name."""
    return _user_error_as_state(_monitoring, cfg, root, batch_path, retrain, model_uri)


def _monitoring(cfg: Config, root: Path, batch_path: str, retrain: bool, model_uri: str | None) -> MonitorOutcome:
    logger = get_run_logger()
    uri = model_uri or f"models:/{cfg.registry.model_name}@champion"
    champion = load_champion(uri, return_state=True).result()
    batch = load_batch(cfg, batch_path, champion, return_state=True).result()
    report = monitor_batch(cfg, champion, batch)
    folder, run_id = write_drift_report(cfg, root, report, champion, batch)
    (logger.warning if report.drifted else logger.info)("monitor %s: %s", batch_path, report.verdict)
    retrained = None
    if report.drifted and retrain:
        retrained = _retrain(cfg, root)
        logger.info("retrain: %s", retrained)
        monitor.tag_retrain(run_id, retrained)
    return MonitorOutcome(report, uri, champion.version, run_id, folder, retrained)


__all__ = ["monitor_flow", "MonitorOutcome"]
