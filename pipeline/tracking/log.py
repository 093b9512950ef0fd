"""What each stage leaves in MLflow, under dotted names (`train.samples_per_s`, `gate.bf16.agreement`)."""
from __future__ import annotations

import math
from dataclasses import asdict

from pipeline.core.evaluate import EvalResult
from pipeline.core.gate import GateReport
from pipeline.core.probe import ProbeResult
from pipeline.core.train import TrainResult
from pipeline.core.validation.validate import ValidationReport
from pipeline.tracking.registry import precision_tags
from pipeline.tracking.runs import log_series, log_text, log_values


def log_training(run_id: str, result: TrainResult, ev: EvalResult, classes: tuple,
                 params: dict | None = None) -> None:
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
    log_values(run_id, metrics=metrics, tags={**precision_tags(result), "train.stop_reason": result.stop_reason or "none"},
               params={"model.kind": result.spec.kind,
                       "model.parameters": sum(p.numel() for p in result.model.parameters()),
                       "model.flops_per_sample": result.spec.flops_per_sample, "train.steps": result.steps,
                       **(params or {})})
    log_series(run_id, "train.epoch_loss", result.epoch_losses)
    log_series(run_id, "train.grad_norm", result.grad_norms)
    if result.policy.loss_scaling:
        log_series(run_id, "train.loss_scale", result.loss_scales)


def log_gate(parent_id: str, report: GateReport, markdown: str) -> None:
    """The report as JSON and Markdown, the verdict as tags and run description, per-check figures as metrics."""
    log_text(parent_id, report.to_json(), "gate/report.json")
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
        if v.power and math.isfinite(v.power.accuracy.drop):
            metrics[f"gate.{v.precision}.detectable_accuracy_drop"] = v.power.accuracy.drop
    log_values(parent_id, metrics=metrics, tags={
        "gate.selected": report.selected or "none", "gate.selection": report.selection,
        "gate.reason": report.reason[:5000],
        "mlflow.note.content": markdown[:60000]})  # the run page shows this tag as the run's description


def log_probe(parent_id: str, results: tuple[ProbeResult, ...]) -> None:
    log_values(parent_id,
               metrics={f"probe.{r.precision}.{k}": v for r in results
                        for k, v in (("samples_per_s", r.samples_per_s), ("slowdown_vs_fp32", r.slowdown_vs_fp32),
                                     ("seconds", r.seconds), ("steps", r.steps))},
               tags={"probe.dropped": "; ".join(f"{r.precision}: {r.reason}" for r in results if r.dropped) or "none"})


def log_validation(parent_id: str, report: ValidationReport) -> None:
    log_values(parent_id, tags={"validation.passed": str(report.passed).lower(),
                                "validation.failed": ", ".join(c.name for c in report.failed)[:5000]},
               metrics={"validation.failed_checks": len(report.failed), "validation.warnings": len(report.warnings),
                        "validation.label_suspects": len(report.label_suspects)})
