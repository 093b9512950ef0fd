"""The monitoring flow: a batch against the champion's stored reference; on drift, optionally retrain.

Drift ends the flow run Failed (DriftDetected, exit 5 for the command line), so a schedule shows it
in the UI and in notifications; the outcome travels on the exception for the command line's report.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import no_retry_on_user_error, prepare_process, resolve
from flows.training import training_flow
from flows.verdicts import emit_drift, notify, publish_drift
from pipeline.core.batch import Batch, label_indices, load_batch, score_batch
from pipeline.core.config import Config
from pipeline.core.drift import DriftReport
from pipeline.core.errors import DriftDetected, MpopsError
from pipeline.core.keep import KeptBatch, keep_batch, kept_batches, training_folder
from pipeline.core.provenance import dvc_hash
from pipeline.render.drift import write_report
from pipeline.tracking import lineage, monitoring, reference
from pipeline.tracking.reference import Champion
from pipeline.tracking.store import artifact_location, setup_tracking

# The nightly retraining deployment of prefect.yaml; used only when a Prefect server is configured.
RETRAIN_DEPLOYMENT = "mpops-training/nightly-retrain"


@dataclass(frozen=True)
class MonitorOutcome:
    report: DriftReport
    model_uri: str
    model_version: str | None
    run_id: str  # the run in the monitoring experiment
    report_dir: Path
    retrain: str | None  # what --retrain did, None when it was not asked for or nothing drifted
    kept: KeptBatch | None = None  # where a drifted batch was kept and pinned


@task(name="load-champion", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE,
      retry_condition_fn=no_retry_on_user_error)
def load_champion(model_uri: str) -> Champion:
    return reference.load_champion(model_uri)


@task(name="load-batch", cache_policy=NO_CACHE)
def read_batch(cfg: Config, batch_path: str, champion: Champion) -> Batch:
    bundle = champion.model.unwrap_python_model().bundle  # its encoder and image shape read the batch as trained
    return load_batch(batch_path, champion.reference.feature_columns, cfg.data.label_column, bundle.encoder,
                      bundle.image_shape)


@task(name="monitor-batch", cache_policy=NO_CACHE)
def monitor_batch(cfg: Config, champion: Champion, batch: Batch) -> DriftReport:
    twin = (champion.twin.model, champion.twin.policy) if champion.twin else None
    return score_batch(batch, champion.reference, cfg.monitor, champion.model.predict, twin,
                       reference.proba_function(champion))


@task(name="write-drift-report", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE,
      retry_condition_fn=no_retry_on_user_error)
def write_drift_report(cfg: Config, root: Path, report: DriftReport, champion: Champion, batch: Batch
                       ) -> tuple[Path, str]:
    folder = write_report(report, champion.reference, batch, champion.model_uri, root / cfg.monitor.report_dir,
                          cfg.monitor.plot_top_k)
    return folder, monitoring.log_report(report, champion, batch, folder, cfg.monitor, artifact_location(root))


@task(name="log-batch-dataset", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE,
      retry_condition_fn=no_retry_on_user_error)
def log_batch_dataset(champion: Champion, batch: Batch, run_id: str) -> None:
    """The batch as the monitoring run's MLflow dataset input, digest = DVC's hash of the batch file or folder."""
    digest = dvc_hash(batch.path)
    lineage.log_datasets([run_id], [lineage.batch_input(batch.x, champion.reference.feature_columns, batch.path,
                                                        digest)])


@task(name="keep-drifted-batch", retries=1, retry_delay_seconds=1, cache_policy=NO_CACHE,
      retry_condition_fn=no_retry_on_user_error)
def keep_drifted(cfg: Config, root: Path, batch: Batch, champion: Champion) -> KeptBatch:
    labels = batch.labels
    labelled = labels is not None and bool((label_indices(labels, champion.reference.classes) >= 0).all())
    return keep_batch(batch.path, root / cfg.monitor.keep_dir, root, labelled)


def retrain_data(cfg: Config, root: Path, champion: Champion) -> tuple[str | None, str]:
    """The data folder for retraining (None: the pinned data alone) and what went into it, in words."""
    kept = kept_batches(root / cfg.monitor.keep_dir)
    labelled = [k for k in kept if k.labelled]
    unlabelled = len(kept) - len(labelled)
    note = (f"{len(labelled)} labelled kept batch(es) added to the pinned data; {unlabelled} kept without labels, "
            "not trained on")
    if not labelled:
        return None, note
    columns = [*champion.reference.feature_columns, cfg.data.label_column]
    folder = root / Path(cfg.monitor.report_dir).parent / "retrain-data"
    return str(training_folder(root / cfg.data.path, labelled, folder, columns)), note


def _retrain(config: str | None, overrides: dict[str, Any] | list[str] | None, data: str | None = None,
             note: str = "") -> str:
    """A deployment run when a Prefect server has the retraining deployment, else the training flow as a subflow;
    `data`: the folder of pinned plus kept batches (None: the configured data), `note`: what went into it."""
    note = f"; {note}" if note else ""
    if os.environ.get("PREFECT_API_URL"):
        from prefect.deployments import run_deployment
        from prefect.exceptions import ObjectNotFound

        try:
            run = run_deployment(name=RETRAIN_DEPLOYMENT, timeout=0,  # timeout=0: start it, do not wait
                                 parameters={"data": data} if data else None)
            return f"started deployment {RETRAIN_DEPLOYMENT}: flow run {run.name} ({run.id}){note}"
        except ObjectNotFound:
            get_run_logger().info("no deployment %s on the server: retraining here", RETRAIN_DEPLOYMENT)
    try:
        outcome = training_flow(config=config, data=data, overrides=overrides)
    except MpopsError as e:  # the monitor's verdict stands whatever the retraining did; its reason is reported
        return f"retraining failed: {e}{note}"
    if outcome.unchanged:  # the same data, code and config would train the champion again
        return f"not retrained: {outcome.unchanged}{note}"
    reg = outcome.registration
    return f"retrained: registered {reg.model_name} version {reg.version} as {', '.join(reg.aliases)}{note}"


def act_on_drift(cfg: Config, root: Path, report: DriftReport, champion: Champion, rows: Batch, run_id: str,
                 retraining: bool = False) -> KeptBatch | None:
    """Keep the batch, tell the monitoring run where, emit the drift event and send the notification."""
    kept = keep_drifted(cfg, root, rows, champion) if cfg.monitor.keep_drifted else None
    if kept:
        monitoring.tag_kept(run_id, str(kept.path), kept.md5, kept.labelled)
    emit_drift(report, champion.model_name or cfg.registry.model_name, champion.version, rows.path,
               str(kept.path) if kept else None, retraining)
    notify(cfg, f"mpops: drift in {rows.path}", report.verdict + (f"\nkept as {kept.path} (md5 {kept.md5})"
                                                                  if kept else ""))
    return kept


@flow(name="mpops-monitoring", log_prints=True)
def monitor_flow(batch: str, retrain: bool = False, config: str | None = None,
                 overrides: dict[str, Any] | list[str] | None = None, model_uri: str | None = None) -> MonitorOutcome:
    """`mpops monitor --batch BATCH [--retrain]`: drift of a batch against the champion (or `model_uri`)."""
    prepare_process()
    root, cfg = resolve(config, None, None, overrides)
    setup_tracking(root, cfg.registry.unreachable_after_s)
    uri = model_uri or f"models:/{cfg.registry.model_name}@champion"
    champion = load_champion(uri)
    rows = read_batch(cfg, batch, champion)
    report = monitor_batch(cfg, champion, rows)
    folder, run_id = write_drift_report(cfg, root, report, champion, rows)
    log_batch_dataset(champion, rows, run_id)
    (get_run_logger().warning if report.drifted else get_run_logger().info)("monitor %s: %s", batch, report.verdict)
    publish_drift(report, (folder / "report.md").read_text(), run_id, champion.model_name, champion.version)
    kept = act_on_drift(cfg, root, report, champion, rows, run_id, retrain) if report.drifted else None
    retrained = None
    if report.drifted and retrain:
        retrained = _retrain(config, overrides, *retrain_data(cfg, root, champion))
        get_run_logger().info("retrain: %s", retrained)
        monitoring.tag_retrain(run_id, retrained)
    outcome = MonitorOutcome(report, uri, champion.version, run_id, folder, retrained, kept)
    if report.drifted:
        checks = ", ".join(r.split(":")[0] for r in report.reasons)
        todo = (f"retrain: {retrained}" if retrained
                else "check the data source, or retrain (`mpops run`, or `mpops monitor --retrain`)")
        raise DriftDetected(f"monitor: drift detected in {batch} ({checks}); report {folder / 'report.md'}; {todo}",
                            detail="\n".join(f"  {r}" for r in report.reasons), outcome=outcome)
    return outcome
