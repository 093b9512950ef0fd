"""One run in the monitoring experiment per `mpops monitor` call: metrics, verdict tags, the report folder."""
from __future__ import annotations

from pathlib import Path

from pipeline.core.batch import Batch
from pipeline.core.config import MonitorConfig
from pipeline.core.drift import DriftReport
from pipeline.tracking.reference import Champion
from pipeline.tracking.runs import log_artifacts, log_values, tracked_run


def log_report(report: DriftReport, champion: Champion, batch: Batch, folder: Path, cfg: MonitorConfig,
               artifact_location: str | None) -> str:
    with tracked_run(cfg.experiment, "monitor", artifact_location) as run_id:
        tags = {"monitor.drifted": str(report.drifted).lower(), "monitor.reason": report.verdict[:5000],
                "monitor.model_uri": champion.model_uri, "monitor.model_run_id": champion.run_id,
                "monitor.precision": report.precision, "monitor.batch": batch.path[:5000],
                "monitor.drifted_features": ",".join(f.name for f in report.drifted_features)[:5000] or "none"}
        if champion.version:
            tags.update({"monitor.model_name": champion.model_name, "monitor.model_version": champion.version})
        log_values(run_id, metrics=report.metrics(), tags=tags)
        log_artifacts(run_id, folder, "drift")
    return run_id


def tag_retrain(run_id: str, what: str) -> None:
    log_values(run_id, tags={"monitor.retrain": what[:5000]})


def tag_kept(run_id: str, path: str, md5: str, labelled: bool) -> None:
    """The kept copy of a drifted batch, named in the run that found the drift."""
    log_values(run_id, tags={"monitor.kept": path[:5000], "monitor.kept_md5": md5,
                             "monitor.kept_labelled": str(labelled).lower()})
