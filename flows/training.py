"""The training flow: Prefect tasks chaining the pipeline stages. Wiring only; the stages live in pipeline/."""
from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import Trained, no_retry_on_user_error, prepare_process, resolve
from flows.preflight import check_tracking_store
from flows.registration import register_selected, selected_or_fail
from flows.unchanged import champion_unchanged, this_run_key
from flows.verdicts import notify, publish_gate
from pipeline.core import checkpoint, distributed
from pipeline.core.checkpoint import Checkpointing, checkpoint_path, remove_run, run_key
from pipeline.core.config import Config
from pipeline.core.data import Dataset, Split, split_dataset
from pipeline.core.data import load_data as read_data
from pipeline.core.device import resolve_device
from pipeline.core.errors import GateFailed, ServiceUnavailable
from pipeline.core.evaluate import EvalResult, evaluate
from pipeline.core.factory import check_factory, is_zoo, load_factory, source_digest
from pipeline.core.gate import CandidateMetrics, GateReport, gate
from pipeline.core.probe import ProbeResult, probe_all
from pipeline.core.provenance import Provenance, collect_provenance
from pipeline.core.provenance import require_pinned as require_data_pinned
from pipeline.core.runkey import TAG
from pipeline.core.stages import HANDOFF, Stages
from pipeline.core.sweep import mark_pareto, sweep_points
from pipeline.core.train import TrainResult, model_spec, train
from pipeline.core.validation.report import write_report
from pipeline.core.validation.dataset import validate_dataset
from pipeline.core.validation.validate import ValidationReport
from pipeline.render import markdown, plots, progress
from pipeline.tracking import lineage, log, runs, serve_probe
from pipeline.tracking.store import artifact_location, setup_tracking


@task(name="load-data", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE,
      retry_condition_fn=no_retry_on_user_error)
def load_data(cfg: Config) -> Dataset:
    return read_data(cfg.data.path, cfg.data)


@task(name="collect-provenance", cache_policy=NO_CACHE)
def provenance(cfg: Config, root: Path, ds: Dataset, require_pinned: bool = False) -> Provenance:
    prov = collect_provenance(root, ds.files, cfg.data.path)
    if require_pinned:
        require_data_pinned(prov, cfg.data.path)
    return prov


@task(name="validate-data", cache_policy=NO_CACHE)
def validate(cfg: Config, root: Path, ds: Dataset) -> ValidationReport:
    return validate_dataset(ds, root / cfg.validation.suite, cfg.validation, cfg.data)


@task(name="write-validation-report", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE,
      retry_condition_fn=no_retry_on_user_error)
def write_validation_report(cfg: Config, root: Path, report: ValidationReport, parent_id: str) -> Path:
    folder = write_report(report, root / cfg.validation.report_dir)["report"].parent
    runs.log_artifacts(parent_id, folder, "validation")
    log.log_validation(parent_id, report)
    for warning in report.warnings:
        get_run_logger().warning("validation: %s", warning)
    return folder


@task(name="split-data", cache_policy=NO_CACHE)
def split(cfg: Config, ds: Dataset) -> Split:
    return split_dataset(ds, cfg.data.test_size, cfg.data.split_seed)


@task(name="check-model", cache_policy=NO_CACHE)
def check_model(cfg: Config, sp: Split) -> None:
    """A factory of the user's own builds a module whose output fits the data, or one error line (exit 2)."""
    spec = model_spec(sp, cfg.train)
    check_factory(spec.kind, spec.input_spec, spec.n_classes, spec.params)


@task(name="log-datasets", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE,
      retry_condition_fn=no_retry_on_user_error)
def log_datasets(cfg: Config, sp: Split, prov: Provenance, run_ids: list[str]) -> None:
    """The splits as MLflow dataset inputs of each run, digest = DVC's hash of the data read."""
    lineage.log_datasets(run_ids, lineage.dataset_inputs(sp, cfg.data.label_column, cfg.data.path, prov.data_md5))


def validated_split(cfg: Config, root: Path, parent_id: str, ds: Dataset,
                    prov: Provenance, st: Stages | None = None) -> tuple[Split, ValidationReport]:
    """Validation, split and the model check, shared by run, sweep and noise-floor: nothing trains on data that
    failed, nor a model that cannot read it."""
    st = st or Stages()
    with st.stage("validation"):
        report = validate(cfg, root, ds)
    with st.stage("logging"):
        where = write_validation_report(cfg, root, report, parent_id)
    report.raise_if_failed(where=str(where))
    with st.stage("load"):
        sp = split(cfg, ds)
    with st.stage("logging"):
        log_datasets(cfg, sp, prov, [parent_id])
    with st.stage("validation"):
        check_model(cfg, sp)
    return sp, report


@task(name="train-precision", cache_policy=NO_CACHE)
def train_precision(cfg: Config, sp: Split, precision: str, parent_id: str, root: Path,
                    ckpt: Checkpointing | None = None, run_name: str | None = None, st: Stages | None = None
                    ) -> Trained:
    name, st = run_name or precision, st or Stages()
    with runs.tracked_run(cfg.registry.experiment, name, artifact_location(root), parent_id=parent_id) as run_id:
        distributed.announce("train", precision)  # under torchrun the other ranks join this training
        with progress.Tracker(name, cfg.train.epochs) as on_epoch, runs.system_metrics(run_id, cfg.train.system_metrics_s):
            with st.stage(f"train.{name}"):
                result = train(sp, cfg.train, precision, ckpt, on_epoch, resolve_device(cfg.train.device))
        with st.stage(f"evaluate.{name}"):
            ev = kept_evaluation(cfg, sp, result, ckpt)
        log.log_training(run_id, result, ev, sp.classes, {"train.batch_size": cfg.train.batch_size,
                                                          "train.seed": cfg.train.seed})
        if result.restored:
            runs.log_values(run_id, tags={"train.restored": "true"})
            get_run_logger().info("%s: restored from its finished checkpoint, not trained again", precision)
    get_run_logger().info("%s: accuracy %.4f, %.0f samples/s, peak %.1f MiB", precision, ev.accuracy,
                          result.samples_per_s, result.peak_memory_bytes / 2**20)
    return Trained(result, ev, run_id)


def kept_evaluation(cfg: Config, sp: Split, result: TrainResult, ckpt: Checkpointing | None) -> EvalResult:
    """A restored training's evaluation from its checkpoint folder, else a new one, kept there for a resume."""
    ev = checkpoint.load_eval(ckpt.path) if ckpt is not None and result.restored else None
    if ev is None:
        ev = evaluate(result.model, sp, result.policy, cfg.gate.fgsm_epsilon, cfg.gate.latency_repeats)
        if ckpt is not None:
            checkpoint.save_eval(ckpt.path, ev)
    return ev


@task(name="probe-precisions", cache_policy=NO_CACHE)
def probe_precisions(cfg: Config, sp: Split, parent_id: str) -> tuple[ProbeResult, ...]:
    # under torchrun the other ranks join each probe
    results = probe_all(sp, cfg.train, cfg.probe, cfg.precisions, resolve_device(cfg.train.device),
                        lambda p: distributed.announce("probe", p, cfg.probe.steps))
    log.log_probe(parent_id, results)
    for r in results:
        if r.dropped:
            get_run_logger().warning("probe dropped %s: %s", r.precision, r.reason)
    return results


@task(name="gate-candidates", cache_policy=NO_CACHE)
def gate_candidates(cfg: Config, sp: Split, trained: list[Trained], parent_id: str) -> GateReport:
    report = gate([CandidateMetrics.of(t.result, t.eval) for t in trained], sp.y_test, cfg.gate, classes=sp.classes)
    log.log_gate(parent_id, report, markdown.gate_markdown(report))
    return report


@task(name="log-plots", cache_policy=NO_CACHE)
def log_plots(cfg: Config, sp: Split, trained: list[Trained], report: GateReport, parent_id: str) -> list[str]:
    results, evals = [t.result for t in trained], [t.eval for t in trained]
    with tempfile.TemporaryDirectory() as tmp:
        paths = plots.run_plots(Path(tmp), results, evals, report, sp.y_test, sp.classes)
        runs.log_artifacts(parent_id, tmp, "plots")
    points = mark_pareto(sweep_points(cfg.train.batch_size, results, evals, report))
    runs.log_text(parent_id, markdown.tradeoff_markdown(points, {cfg.train.batch_size: report.selected},
                                                        "Precision trade-offs of this run"), "tradeoff.md")
    return [p.name for p in paths]


def checkpointing(cfg: Config, root: Path, key: str, precision: str, resume: bool) -> Checkpointing | None:
    if not cfg.train.checkpoint_every:
        return None
    return Checkpointing(checkpoint_path(root / cfg.train.checkpoint_dir, key, precision),
                         cfg.train.checkpoint_every, resume)


@dataclass(frozen=True)
class RunOutcome:
    parent_run_id: str
    results: tuple[TrainResult, ...]
    evals: tuple[EvalResult, ...]
    gate: GateReport | None
    registration: Any  # pipeline.tracking.registry.Registration; None when unchanged
    probes: tuple[ProbeResult, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, in the order they ran
    unchanged: str = ""  # the champion already has this run's key: nothing trained, nothing registered


@flow(name="mpops-training", log_prints=True)
def training_flow(config: str | None = None, data: str | None = None, precisions: str | None = None,
                  overrides: dict[str, Any] | list[str] | None = None, resume: bool = False,
                  require_pinned: bool = False, force: bool = False) -> RunOutcome:
    """`mpops run`: validate, train every precision, gate against fp32, register the selected model.

    The parameters are the command line's: a config file, a data path, precisions, `--set` overrides
    (`{"train.epochs": 5}` or `["train.epochs=5"]`), `resume` to continue each precision from its
    last checkpoint of the same config and data, `require_pinned` to refuse data other than what
    data.dvc pins, and `force` to train even when the champion has this run's key."""
    st = HANDOFF.take()
    prepare_process()
    root, cfg = resolve(config, data, precisions, overrides)
    setup_tracking(root, cfg.registry.unreachable_after_s)
    try:
        outcome = run_pipeline(cfg, root, resume, require_pinned, force, st)
    except GateFailed as e:
        publish_gate(e.gate_report, getattr(e, "run_id", None))
        notify(cfg, f"mpops: gate failed for {cfg.registry.model_name}", str(e) + ("\n" + e.detail if e.detail else ""))
        raise
    except ServiceUnavailable as e:
        e.detail = e.detail or (f"the finished trainings and their evaluations are kept in "
                                f"{root / cfg.train.checkpoint_dir}: once the store is back, `mpops run --resume` "
                                "registers without training again")
        raise
    if outcome.unchanged:
        return outcome
    reg = outcome.registration
    publish_gate(outcome.gate, outcome.parent_run_id, reg.model_name, reg.version)
    if "champion" in reg.aliases:
        notify(cfg, f"mpops: new champion {reg.model_name} version {reg.version}",
               f"{reg.model_name} version {reg.version} is the champion: {reg.champion_reason}")
    return outcome


def run_pipeline(cfg: Config, root: Path, resume: bool = False, require_pinned: bool = False, force: bool = False,
                 st: Stages | None = None) -> RunOutcome:
    st = st or Stages()
    if not is_zoo(cfg.train.model):
        load_factory(cfg.train.model)  # an unimportable factory stops the run before any data is read
    with st.stage("tracking check"):
        check_tracking_store(cfg)
    with st.stage("load"):
        ds = load_data(cfg)
        prov = provenance(cfg, root, ds, require_pinned)
    with st.stage("run key"):
        key, key_parts = this_run_key(cfg, root, prov.data_md5)
        unchanged = None if force else champion_unchanged(cfg, key)
    if unchanged:
        get_run_logger().info(unchanged)
        return RunOutcome("", (), (), None, None, seconds=dict(st.seconds), unchanged=unchanged)
    with runs.tracked_run(cfg.registry.experiment, "pipeline", artifact_location(root),
                          tags={**prov.as_tags(), TAG: key}) as parent_id:
        with st.stage("logging"):
            runs.log_values(parent_id, params=cfg.as_flat_dict())
            runs.log_text(parent_id, json.dumps(key_parts, indent=2, sort_keys=True), "run_key.json")
        sp, validation = validated_split(cfg, root, parent_id, ds, prov, st)
        outcome = train_and_register(cfg, root, sp, validation, prov, parent_id, resume, key, st)
        runs.log_values(parent_id, metrics=st.metrics())
    return outcome


def train_and_register(cfg: Config, root: Path, sp: Split, validation: ValidationReport, prov: Provenance,
                       parent_id: str, resume: bool, key: str, st: Stages) -> RunOutcome:
    with st.stage("probe"):
        probes = probe_precisions(cfg, sp, parent_id) if cfg.probe.steps and len(cfg.precisions) > 1 else ()
    dropped = {r.precision for r in probes if r.dropped}
    ckpt_key = run_key(cfg.train, cfg.data, prov.data_md5, source_digest(cfg.train.model))
    trained = [train_precision(cfg, sp, p, parent_id, root, checkpointing(cfg, root, ckpt_key, p, resume),
                               st=st) for p in cfg.precisions if p not in dropped]
    # Nothing is timed from here on: the servability probe's interpreter starts now and imports while the
    # gate, the plots and the model's logging run.
    with serve_probe.ProbeProcess() if cfg.serving.check else contextlib.nullcontext() as started:
        with st.stage("logging"):
            log_datasets(cfg, sp, prov, [t.run_id for t in trained])
        with st.stage("gate"):
            report = gate_candidates(cfg, sp, trained, parent_id)
        plotted = log_plots.submit(cfg, sp, trained, report, parent_id)  # drawn while the model registers
        try:
            selected = selected_or_fail(trained, report)
            with st.stage("registration"):
                registration = register_selected(cfg, sp, selected, trained, report, prov, validation, parent_id,
                                                 key, started)
        except GateFailed as e:
            e.run_id = parent_id  # for the flow run's artifacts: the run holding the gate report
            raise
        finally:
            with st.stage("logging"):
                plotted.wait()  # whatever the outcome: a failed gate's plots are what its reviewer looks at
    plotted.result()  # a plot that failed fails the run
    remove_run(root / cfg.train.checkpoint_dir, ckpt_key)
    return RunOutcome(parent_id, tuple(t.result for t in trained), tuple(t.eval for t in trained), report,
                      registration, probes, dict(st.seconds))
