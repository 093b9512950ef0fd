"""Verdicts where an operator looks: Prefect artifacts on the flow run, one notification, a Prefect event.

The Prefect UI shows a failed gate as a Failed flow run with green tasks; the artifacts say why (the gate
or drift table) and link to the MLflow run and model version. Publishing is best effort: a verdict that
cannot be shown is logged, and never changes the run's outcome or exit code.
"""
from __future__ import annotations

from typing import Any

import mlflow
from prefect import get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.events import emit_event

from flows.notify import send
from pipeline.core.config import Config
from pipeline.core.drift import DriftReport
from pipeline.core.gate import GateReport
from pipeline.render.markdown import gate_markdown
from pipeline.tracking.runs import run_url

DRIFT_EVENT = "mpops.monitor.drift"
# Where `mlflow ui` serves a local store by default: the link works once it runs.
LOCAL_UI = "http://127.0.0.1:5000"


def _ui_link(route: str) -> tuple[str, str]:
    """The URL of a route of the MLflow UI, and a note for a local store."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith("http"):
        return uri.rstrip("/") + route, ""
    return LOCAL_UI + route, " (local store: start `mlflow ui`)"


def _safely(what: str, fn, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # a verdict that cannot be published must not fail the run it describes
        get_run_logger().warning("could not publish the %s: %s", what, str(e).splitlines()[0] if str(e) else e)
        return None


def _links(run_id: str, name: str | None, version: str | None, key: str) -> None:
    route = _safely("MLflow run link", run_url, run_id)
    if route:
        url, note = _ui_link(route[route.find("/#"):])
        _safely("MLflow run link", create_link_artifact, url, link_text=f"MLflow run {run_id}{note}",
                key=f"{key}-mlflow-run")
    if name and version:
        url, note = _ui_link(f"/#/models/{name}/versions/{version}")
        _safely("model version link", create_link_artifact, url, link_text=f"model {name} version {version}{note}",
                key=f"{key}-model-version")


def publish_gate(report: GateReport, run_id: str | None, name: str | None = None, version: str | None = None) -> None:
    """The gate table, and links to the parent run and the registered version (none when nothing passed)."""
    verdict = f"registered {name} version {version}" if version else "no candidate passed: nothing registered"
    _safely("gate table", create_markdown_artifact, f"**Gate: {verdict}**\n\n{gate_markdown(report)}",
            key="mpops-gate", description=report.reason[:500])
    if run_id:
        _links(run_id, name, version, "mpops-training")


def drift_rows(report: DriftReport) -> list[dict[str, Any]]:
    """The drifted features, then the five largest PSIs of the rest: what the UI table shows."""
    rest = sorted((f for f in report.features if not f.drifted), key=lambda f: -f.psi)[:5]
    return [{"feature": f.name, "psi": round(f.psi, 4), "psi_cutoff": round(f.psi_cutoff, 4),
             "ks_pvalue": float(f"{f.ks_pvalue:.3g}"), "drifted": f.drifted}
            for f in (*report.drifted_features, *rest)]


def publish_drift(report: DriftReport, markdown: str, run_id: str, name: str | None, version: str | None) -> None:
    _safely("drift table", create_table_artifact, drift_rows(report), key="mpops-drift-features",
            description=report.verdict[:500])
    _safely("drift report", create_markdown_artifact, markdown, key="mpops-drift", description=report.verdict[:500])
    _links(run_id, name, version, "mpops-monitoring")


def publish_scoring(rows: int, output: str, name: str | None, version: str | None, precision: str) -> None:
    """What the batch scoring wrote: the drift verdict of the same rows is published beside it."""
    _safely("scoring summary", create_markdown_artifact,
            f"**Scored {rows} rows** with {name or 'the model'} version {version or '?'} in {precision}; "
            f"predictions in `{output}`", key="mpops-predict", description=f"{rows} rows scored")


def emit_drift(report: DriftReport, model_name: str, version: str | None, batch: str, kept: str | None,
               retraining: bool = False) -> None:
    """The event prefect.yaml's retraining trigger listens for. `retraining`: this monitor retrains itself
    (`--retrain`), labelled so the trigger does not start a second retraining."""
    _safely("drift event", emit_event, DRIFT_EVENT,
            resource={"prefect.resource.id": f"mpops.model.{model_name}", "prefect.resource.name": model_name,
                      "mpops.retraining": str(retraining).lower()},
            payload={"batch": batch, "kept": kept or "", "version": version or "",
                     "reasons": [r.split(":")[0] for r in report.reasons]})


def notify(cfg: Config, title: str, body: str) -> None:
    if cfg.notify.webhook_url:
        _safely("notification", send, cfg.notify.webhook_url, title, body, cfg.notify.timeout_s)
