"""The training flow: Prefect tasks chaining the pipeline/ stages. No logic of its own."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

from pipeline import data as data_stage
from pipeline import distributed, progress, registry
from pipeline.checkpoint import Checkpointing, checkpoint_path, remove_run, run_key
from pipeline.config import Config
from pipeline.evaluate import EvalResult, evaluate
from pipeline.errors import DataValidationError, GateFailed, MpopsError
from pipeline.gate import CandidateMetrics, GateReport, gate
from pipeline.precision import make_policy, resolve_device
from pipeline.probe import ProbeResult, decide, probe_one
from pipeline.provenance import Provenance, collect_provenance
from pipeline.registry import Registration
from pipeline.setup import artifact_location
from pipeline.summary import what_it_bought
from pipeline.train import TrainResult, train
from pipeline.validate import ValidationReport, validate_frame, write_report


@dataclass(frozen=True)
class RunOutcome:
    parent_run_id: str
    results: tuple[TrainResult, ...]
    evals: tuple[EvalResult, ...]
    gate: GateReport
    registration: Registration
    probes: tuple[ProbeResult, ...] = ()


def _user_error_as_state(fn, *args):
    """A user error (bad data, bad suite) ends the task or flow as Failed with its message as the
    state message, without Prefect logging a traceback for it; `state.result()` re-raises it."""
    try:
        return fn(*args)
    except MpopsError as e:
        return Failed(message=str(e), data=e)


@task(name="load-data", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE,
      retry_condition_fn=lambda t, r, s: not isinstance(s.result(raise_on_failure=False), DataValidationError))
def load_data(cfg: Config) -> data_stage.Dataset:
    return _user_error_as_state(data_stage.load_dataset, cfg.data.path, cfg.data.label_column)


@task(name="collect-provenance", cache_policy=NO_CACHE)
def provenance(root: Path, ds: data_stage.Dataset) -> Provenance:
    return collect_provenance(root, ds.files)


@task(name="validate-data", cache_policy=NO_CACHE)
def validate(cfg: Config, root: Path, ds: data_stage.Dataset) -> ValidationReport:
    return _user_error_as_state(validate_frame, ds.frame, root / cfg.validation.suite, cfg.validation, cfg.data)


@task(name="write-validation-report", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def write_validation_report(cfg: Config, root: Path, report: ValidationReport, parent_id: str) -> Path:
    folder = write_report(report, root / cfg.validation.report_dir)["report"].parent
    registry.log_artifacts(parent_id, folder, "validation")
    registry.log_values(parent_id, tags={"validation.passed": str(report.passed).lower(),
                                         "validation.failed": ", ".join(c.name for c in report.failed)[:5000]},
                        metrics={"validation.failed_checks": len(report.failed),
                                 "validation.warnings": len(report.warnings),
                                 "validation.label_suspects": len(report.label_suspects)})
    for warning in report.warnings:
        get_run_logger().warning("validation: %s", warning)
    return folder


@task(name="split-data", cache_policy=NO_CACHE)
def split(cfg: Config, ds: data_stage.Dataset) -> data_stage.Split:
    return _user_error_as_state(data_stage.split_dataset, ds, cfg.data.test_size, cfg.data.split_seed)


def _checkpointing(cfg: Config, root: Path, key: str, precision: str, resume: bool) -> Checkpointing | None:
    if not cfg.train.checkpoint_every:
        return None
    return Checkpointing(checkpoint_path(root / cfg.train.checkpoint_dir, key, precision),
                         cfg.train.checkpoint_every, resume)


@task(name="train-precision", cache_policy=NO_CACHE)
def train_precision(cfg: Config, sp: data_stage.Split, precision: str, parent_id: str, root: Path,
                    ckpt: Checkpointing | None = None, run_name: str | None = None
                    ) -> tuple[TrainResult, EvalResult, str]:
    policy = make_policy(precision, resolve_device(cfg.train.device))
    run_id = registry.start_run(cfg.registry.experiment, run_name or precision, artifact_location(root),
                                parent_id=parent_id)
    try:
        distributed.announce("train", precision)  # under torchrun the other ranks join this training
        with progress.Tracker(run_name or precision, cfg.train.epochs) as on_epoch, \
                registry.system_metrics(run_id, cfg.train.system_metrics_s):
            result = train(sp, cfg.train, policy, ckpt, on_epoch)
        ev = evaluate(result.model, sp, policy, cfg.gate.fgsm_epsilon, cfg.gate.latency_repeats)
        registry.log_training(run_id, result, ev, sp.classes)
        registry.log_values(run_id, params={"train.batch_size": cfg.train.batch_size, "train.seed": cfg.train.seed})
    except BaseException:
        registry.end_run(run_id, ok=False)
        raise
    registry.end_run(run_id, ok=True)
    get_run_logger().info("%s: accuracy %.4f, %.0f samples/s, peak %.1f MiB", precision, ev.accuracy,
                          result.samples_per_s, result.peak_memory_bytes / 2**20)
    return result, ev, run_id


@task(name="probe-precisions", cache_policy=NO_CACHE)
def probe_precisions(cfg: Config, sp: data_stage.Split, parent_id: str) -> tuple[ProbeResult, ...]:
    device = resolve_device(cfg.train.device)
    measured = {}
    for p in cfg.precisions:
        distributed.announce("probe", p, cfg.probe.steps)  # under torchrun the other ranks join this probe
        measured[p] = probe_one(sp, cfg.train, make_policy(p, device), cfg.probe.steps)
    results = decide(measured, cfg.probe)
    registry.log_values(parent_id, metrics={f"probe.{r.precision}.{k}": v for r in results
                                            for k, v in (("samples_per_s", r.samples_per_s),
                                                         ("slowdown_vs_fp32", r.slowdown_vs_fp32))},
                        tags={"probe.dropped": "; ".join(f"{r.precision}: {r.reason}" for r in results if r.dropped)
                              or "none"})
    for r in results:
        if r.dropped:
            get_run_logger().warning("probe dropped %s: %s", r.precision, r.reason)
    return results


@task(name="gate-candidates", cache_policy=NO_CACHE)
def gate_candidates(cfg: Config, sp: data_stage.Split, results: list[TrainResult], evals: list[EvalResult],
                    parent_id: str) -> GateReport:
    report = gate([CandidateMetrics.of(r, e) for r, e in zip(results, evals)], sp.y_test, cfg.gate,
                  classes=sp.classes)
    registry.log_gate(parent_id, report)
    return report


@task(name="log-plots", cache_policy=NO_CACHE)
def log_plots(cfg: Config, sp: data_stage.Split, results: list[TrainResult], evals: list[EvalResult],
              report: GateReport, parent_id: str) -> list[str]:
    import tempfile

    from pipeline.plots import run_plots
    from pipeline.sweep import mark_pareto, sweep_points, tradeoff_markdown

    with tempfile.TemporaryDirectory() as tmp:
        paths = run_plots(Path(tmp), results, evals, report, sp.y_test, sp.classes)
        registry.log_artifacts(parent_id, tmp, "plots")
    points = mark_pareto(sweep_points(cfg.train.batch_size, results, evals, report))
    registry.log_text(parent_id, tradeoff_markdown(points, {cfg.train.batch_size: report.selected},
                                                   "Precision trade-offs of this run"), "tradeoff.md")
    return [p.name for p in paths]


@task(name="register-model", cache_policy=NO_CACHE)
def register_model(cfg: Config, run_id: str, parent_id: str, result: TrainResult, ev: EvalResult,
                   sp: data_stage.Split, report: GateReport, prov: Provenance, validation: str,
                   fp32_result: TrainResult | None = None) -> Registration:
    return registry.register(cfg, run_id, parent_id, result, ev, sp, report, prov, validation_passed=True,
                             validation_summary=validation, fp32_result=fp32_result)


@flow(name="mpops-training", log_prints=True)
def training_flow(cfg: Config, root: Path, resume: bool = False) -> RunOutcome | State:
    """`resume`: continue each precision from its last checkpoint of the same config and data."""
    return _user_error_as_state(_training, cfg, root, resume)


def validated_split(cfg: Config, root: Path, parent_id: str, ds: data_stage.Dataset
                    ) -> tuple[data_stage.Split, ValidationReport]:
    """Validation then split, shared by run, sweep and noise-floor: nothing trains on data that failed."""
    report = validate(cfg, root, ds, return_state=True).result()
    report.raise_if_failed(where=str(write_validation_report(cfg, root, report, parent_id)))
    return split(cfg, ds, return_state=True).result(), report


def _training(cfg: Config, root: Path, resume: bool = False) -> RunOutcome:
    logger = get_run_logger()
    # return_state + result(): a task that ended Failed with a user error re-raises it here.
    ds = load_data(cfg, return_state=True).result()
    prov = provenance(root, ds)
    parent_id = registry.start_run(cfg.registry.experiment, "pipeline", artifact_location(root),
                                   tags=prov.as_tags())
    ok = False
    try:
        registry.log_values(parent_id, params=cfg.as_flat_dict())
        sp, report = validated_split(cfg, root, parent_id, ds)
        key = run_key(cfg.train, cfg.data, prov.data_md5)
        probes = probe_precisions(cfg, sp, parent_id) if cfg.probe.steps and len(cfg.precisions) > 1 else ()
        kept = [p for p in cfg.precisions if p not in {r.precision for r in probes if r.dropped}]
        trained = [train_precision(cfg, sp, p, parent_id, root, _checkpointing(cfg, root, key, p, resume))
                   for p in kept]
        results, evals = [t[0] for t in trained], [t[1] for t in trained]
        verdicts = gate_candidates(cfg, sp, results, evals, parent_id)
        log_plots(cfg, sp, results, evals, verdicts, parent_id)
        logger.info("what each precision bought here: %s", what_it_bought(verdicts) or "only fp32 was trained")
        if verdicts.selected is None:
            failed = GateFailed(f"no candidate passed the gates: {verdicts.reason}; nothing registered",
                                detail="\n".join(f"  {v.precision}: {v.reason}" for v in verdicts.verdicts))
            failed.gate_report = verdicts  # for `mpops run --report`: CI keeps the report of a failed gate too
            raise failed
        chosen = kept.index(verdicts.selected)
        registration = register_model(cfg, trained[chosen][2], parent_id, results[chosen], evals[chosen], sp,
                                      verdicts, prov, report.summary(), results[kept.index("fp32")])
        remove_run(root / cfg.train.checkpoint_dir, key)
        ok = True
    finally:
        registry.end_run(parent_id, ok)
    return RunOutcome(parent_id, tuple(results), tuple(evals), verdicts, registration, probes)


__all__ = ["training_flow", "RunOutcome", "validated_split"]
