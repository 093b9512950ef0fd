"""MLflow: runs, metrics and the all-or-nothing registration of the selected model."""
from __future__ import annotations

import contextlib
import json
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import pandas as pd
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from pipeline.config import Config
from pipeline.data import Split
from pipeline.evaluate import EvalResult
from pipeline.gate import GateReport
from pipeline.provenance import Provenance
from pipeline.train import TrainResult

CHAMPION, CHALLENGER = "champion", "challenger"
PIPELINE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Registration:
    model_name: str
    version: str
    aliases: tuple[str, ...]
    champion_reason: str


def start_run(experiment: str, run_name: str, artifact_location: str | None,
              parent_id: str | None = None, tags: dict[str, str] | None = None) -> str:
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment, artifact_location=artifact_location)
    all_tags = {"mlflow.runName": run_name, **(tags or {})}
    if parent_id:
        all_tags["mlflow.parentRunId"] = parent_id
    return client.create_run(exp_id, tags=all_tags, run_name=run_name).info.run_id


def end_run(run_id: str, ok: bool) -> None:
    MlflowClient().set_terminated(run_id, "FINISHED" if ok else "FAILED")


def log_values(run_id: str, params: dict | None = None, metrics: dict | None = None,
               tags: dict | None = None) -> None:
    now = mlflow.utils.time.get_current_time_millis()
    MlflowClient().log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if not math.isnan(float(v))],
        params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    MlflowClient().log_text(run_id, text, artifact_file)


def log_artifacts(run_id: str, folder: str | Path, artifact_path: str) -> None:
    MlflowClient().log_artifacts(run_id, str(folder), artifact_path)


def log_gate(parent_id: str, report: GateReport) -> None:
    """The report as JSON and Markdown, the verdict as tags and run description, per-check figures as metrics."""
    log_text(parent_id, report.to_json(), "gate/report.json")
    markdown = report.to_markdown()
    log_text(parent_id, markdown, "gate/report.md")
    metrics = {}
    for v in report.verdicts:
        metrics[f"gate.{v.precision}.passed"] = float(v.passed)
        if v.comparison:
            c = v.comparison
            metrics.update({f"gate.{v.precision}.agreement": c.agreement,
                            f"gate.{v.precision}.accuracy_ci_low": c.accuracy_ci[0],
                            f"gate.{v.precision}.accuracy_ci_high": c.accuracy_ci[1],
                            f"gate.{v.precision}.mcnemar_p": c.mcnemar_p,
                            f"gate.{v.precision}.max_prob_diff": c.max_prob_diff,
                            f"gate.{v.precision}.speedup": v.speedup,
                            f"gate.{v.precision}.latency_ratio": v.latency_ratio})
    log_values(parent_id, metrics=metrics, tags={
        "gate.selected": report.selected or "none", "gate.selection": report.selection,
        "gate.reason": report.reason[:5000],
        # the run page shows this tag as the run's description
        "mlflow.note.content": markdown[:60000]})


@contextlib.contextmanager
def system_metrics(run_id: str, interval_s: float):
    """MLflow's system metrics (system/cpu_utilization_percentage, memory, GPU via pynvml) for the run.

    A sampling thread of MLflow's own: on a 2-core machine it costs a little throughput, so it can be off."""
    if interval_s <= 0:
        yield
        return
    import logging

    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # 4 INFO lines a training otherwise
    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def log_training(run_id: str, result: TrainResult, ev: EvalResult, classes: tuple) -> None:
    metrics = {
        "train.samples_per_s": result.samples_per_s, "train.peak_memory_mb": result.peak_memory_bytes / 2**20,
        "train.wall_s": result.wall_s, "train.skipped_steps": result.skipped_steps,
        "train.nonfinite_losses": result.nonfinite_losses, "train.final_loss": result.epoch_losses[-1],
        "train.nonfinite_grads": result.nonfinite_grads, "train.skipped_share": result.skipped_share,
        "train.stopped_early": float(result.stop_reason is not None),
        # training ~ 3x forward FLOPs; compare with bench/matmul_peak.py for model FLOP utilisation
        "train.model_gflops_per_s": 3 * result.spec.flops_per_sample * result.samples_per_s / 1e9,
        "eval.accuracy": ev.accuracy, "eval.macro_f1": ev.macro_f1, "eval.macro_precision": ev.macro_precision,
        "eval.macro_recall": ev.macro_recall, "eval.ece": ev.ece, "eval.brier": ev.brier,
        "eval.fgsm_accuracy": ev.fgsm_accuracy,
    }
    if ev.latency:
        metrics.update({f"eval.latency.{k}": v for k, v in asdict(ev.latency).items()})
    metrics.update({f"eval.recall.class_{c}": r for c, r in zip(classes, ev.per_class_recall)})
    tags = {**result.policy.tags, "train.stop_reason": result.stop_reason or "none"}
    log_values(run_id, metrics=metrics, tags=tags,
               params={"model.kind": result.spec.kind,
                       "model.parameters": sum(p.numel() for p in result.model.parameters()),
                       "model.flops_per_sample": result.spec.flops_per_sample, "train.steps": result.steps})
    now = mlflow.utils.time.get_current_time_millis()
    series = [Metric("train.epoch_loss", loss, now, epoch)
              for epoch, loss in enumerate(result.epoch_losses) if math.isfinite(loss)]
    series += [Metric("train.grad_norm", g, now, step) for step, g in enumerate(result.grad_norms) if math.isfinite(g)]
    if result.policy.loss_scaling:
        series += [Metric("train.loss_scale", s, now, step) for step, s in enumerate(result.loss_scales)]
    for i in range(0, len(series), 1000):  # MLflow takes at most 1000 metrics a batch
        MlflowClient().log_batch(run_id, metrics=series[i:i + 1000])


def _log_model(run_id: str, result: TrainResult, split: Split) -> str:
    from pipeline.evaluate import predict_indices
    from pipeline.predict import PrecisionClassifier

    meta = {"precision": result.precision, "spec": asdict(result.spec),
            "feature_columns": list(split.feature_columns), "classes": [c for c in split.classes]}
    # float64 in the signature: MLflow then accepts int and float inputs alike (int -> float32 it refuses).
    example = pd.DataFrame(split.x_test[:5].astype("float64"), columns=list(split.feature_columns))
    preds = [split.classes[i] for i in predict_indices(result.model, split.x_test[:5], result.policy)]
    with tempfile.TemporaryDirectory() as tmp:
        weights, meta_file = Path(tmp) / "weights.pt", Path(tmp) / "meta.json"
        torch.save({k: v.cpu() for k, v in result.model.state_dict().items()}, weights)
        meta_file.write_text(json.dumps(meta, default=int))
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=PrecisionClassifier(),
                artifacts={"weights": str(weights), "meta": str(meta_file)},
                code_paths=[str(PIPELINE_DIR)],
                signature=infer_signature(example, pd.Series(preds)), input_example=example,
                # Explicit: inferring them costs ~10 s a model.
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                                  f"pandas=={pd.__version__}", "numpy"],
            )
    return info.model_uri


def _champion_eval(client: MlflowClient, name: str, version: str, split: Split) -> EvalResult | str:
    """The current champion scored on the current test rows, or why it cannot be."""
    from pipeline.evaluate import evaluate

    try:
        champ = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()
    except Exception as e:  # MLflow raises several types for a missing or unreadable model
        return f"it could not be loaded ({str(e).splitlines()[0][:200]})"
    if list(champ.features) != list(split.feature_columns) or [str(c) for c in champ.classes] != \
            [str(c) for c in split.classes]:
        return "its feature columns or classes differ from the current data"
    return evaluate(champ.model, split, champ.policy, fgsm_epsilon=0.0)


def _champion_decision(client: MlflowClient, cfg: Config, ev: EvalResult, split: Split) -> tuple[bool, str]:
    """`champion` moves only if the new model passes the gate's quality comparison against the
    current champion, re-scored on the current test data (not its own, older, figures)."""
    from pipeline.gate import compare, quality_checks

    name = cfg.registry.model_name
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return True, "no champion yet"
    champ = _champion_eval(client, name, current.version, split)
    if isinstance(champ, str):
        return True, f"champion v{current.version} cannot be compared: {champ}; the new version replaces it"
    cmp = compare(champ, ev, split.y_test, cfg.gate)
    failed = [c for c in quality_checks(champ, ev, cmp, cfg.gate, tuple(map(str, split.classes))) if not c.passed]
    figures = (f"accuracy {ev.accuracy:.4f} vs champion v{current.version} {champ.accuracy:.4f} on the current "
               f"test data (delta CI [{cmp.accuracy_ci[0]:+.4f}, {cmp.accuracy_ci[1]:+.4f}])")
    if failed:
        return False, f"{figures}; failed {'; '.join(c.describe() for c in failed)}; champion stays"
    return True, f"{figures}; passed the quality comparison against the champion"


def _description(result: TrainResult, ev: EvalResult, report: GateReport, parent_run_id: str, prov: Provenance,
                 run_url: str) -> str:
    from pipeline.report import verdict_table

    return (f"{result.precision} model selected by the mpops gate; parent run [{parent_run_id}]({run_url}).\n\n"
            f"Gate ({report.selection}): {report.reason}\n\nTest accuracy {ev.accuracy:.4f}, macro-F1 "
            f"{ev.macro_f1:.4f}, ECE {ev.ece:.4f}; data md5 {prov.dvc_md5 or prov.data_md5}; git "
            f"{prov.git_commit[:12]}.\n\n{verdict_table(report.verdict(result.precision))}\n\n"
            f"Full report: gate/report.md and model_card.md in the model's run.")


def run_url(run_id: str) -> str:
    """The run's page: a full URL on a tracking server, the UI's relative route for a local store."""
    run = MlflowClient().get_run(run_id)
    uri = mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.startswith("http") else ""
    return f"{base}/#/experiments/{run.info.experiment_id}/runs/{run_id}"


def register(cfg: Config, run_id: str, parent_run_id: str, result: TrainResult, ev: EvalResult, split: Split,
             report: GateReport, prov: Provenance, validation_passed: bool,
             validation_summary: str = "", fp32_result: TrainResult | None = None) -> Registration:
    """Log, register and tag the model; aliases move only once the version is complete.

    A failure before the aliases move deletes the half-made version, so the registry never
    shows a version without its tags, description and model card.
    """
    from pipeline.precision import device_label
    from pipeline.report import CardFacts, model_card

    name = cfg.registry.model_name
    verdict = report.verdict(result.precision)
    tags = {
        **result.policy.tags, "torch.version": torch.__version__, **prov.as_tags(),
        "gate.passed": str(verdict.passed).lower(), "gate.speedup_vs_fp32": f"{verdict.speedup:.2f}",
        "gate.accuracy_delta_vs_fp32": f"{verdict.accuracy_delta:.4f}",
        "gate.memory_ratio_vs_fp32": f"{verdict.memory_ratio:.2f}", "gate.reason": report.reason[:5000],
        "gate.selection": report.selection,
        "validation.passed": str(validation_passed).lower(), "eval.accuracy": f"{ev.accuracy:.6f}",
        "eval.macro_f1": f"{ev.macro_f1:.6f}", "eval.ece": f"{ev.ece:.6f}", "mlflow.parent_run_id": parent_run_id,
    }
    card = model_card(CardFacts(name, result.precision, device_label(result.policy.device), torch.__version__,
                                prov.dvc_md5 or prov.data_md5, prov.git_commit, len(split.y_train) + len(split.y_test),
                                len(split.feature_columns), tuple(map(str, split.classes)),
                                validation_summary or f"passed: {validation_passed}", parent_run_id), report)
    # Everything the version will point at is written first: a failure here registers nothing.
    log_text(run_id, card, "model_card.md")
    log_text(run_id, report.to_markdown(), "gate/report.md")
    log_text(run_id, report.to_json(), "gate/report.json")
    model_uri = _log_model(run_id, result, split)
    # Drift reference + fp32 twin into the same run before the version exists: registration stays all-or-nothing.
    from pipeline.monitor import log_reference
    log_reference(run_id, cfg.monitor, result, ev, split, fp32_result)
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="mpops: mixed-precision models gated against fp32")
    version = mlflow.register_model(model_uri, name, tags=tags)
    try:
        client.update_model_version(name, version.version, description=_description(
            result, ev, report, parent_run_id, prov, run_url(parent_run_id)))
        move, champion_reason = _champion_decision(client, cfg, ev, split)
        client.set_model_version_tag(name, version.version, "registry.champion_decision", champion_reason[:5000])
    except Exception:
        client.delete_model_version(name, version.version)
        raise
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    aliases = [CHALLENGER]
    if move:
        client.set_registered_model_alias(name, CHAMPION, version.version)
        aliases.append(CHAMPION)
    return Registration(name, str(version.version), tuple(aliases), champion_reason)
