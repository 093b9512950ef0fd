"""`mpops` commands that validate and train: run, validate, expectations, sweep, noise-floor."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flows import cli_base
from flows.cli_base import ConfigOpt, DataOpt, QuietOpt, SetOpt, use_progress, say, tracking_uri, app
from flows.common import resolve
from pipeline.core.errors import ConfigError, MpopsError


@app.command()
def run(config: Optional[Path] = ConfigOpt, data: Optional[str] = DataOpt,
        precisions: Optional[str] = typer.Option(
            None, "--precisions",
            help="comma-separated: fp32 (required), tf32, bf16, fp16, bf16-true, fp8 (default: fp32,bf16,fp16)"),
        set_: list[str] = SetOpt,
        resume: bool = typer.Option(False, "--resume",
                                    help="continue a killed run from its last checkpoints (default: off)"),
        report: Optional[Path] = typer.Option(None, "--report",
                                              help="write the gate report (JSON) here, pass or fail (default: none)"),
        require_pinned: bool = typer.Option(False, "--require-pinned",
                                            help="refuse (exit 3) data other than what data.dvc pins (default: off)"),
        force: bool = typer.Option(False, "--force", help="train even when the champion was trained on the same "
                                                          "data, code and config (default: off)"),
        quiet: bool = QuietOpt) -> None:
    """Validate, train every precision, gate against fp32, register the selected model."""
    from pipeline.core.stages import Stages, command_age_s

    st = Stages()
    root, cfg = resolve(config, data, precisions, set_)  # a bad config stops here, before torch is imported
    from pipeline.core import distributed

    if not distributed.init_from_env().is_main:
        _follow(cfg)  # torchrun: this rank only trains; rank 0 runs the pipeline and logs
        return
    if resume and distributed.world().size > 1:
        raise ConfigError("--resume continues single-process runs only; run it without torchrun")
    age = command_age_s()
    st.add("imports", age)
    began = st.clock() - age
    use_progress(quiet)
    from flows.run_output import write_run_report

    try:
        outcome = _run_flow(st, cfg, root, report, not force and not resume,
                            (str(config) if config else None, data, precisions, set_, resume, require_pinned, force))
    except MpopsError as e:
        if report:
            write_run_report(report, error=e)
        raise
    finally:
        distributed.announce("done")
        distributed.shutdown()
    if outcome is not None:  # None: unchanged, said before Prefect's server was waited for
        _finish(st, outcome, cfg, root, report, st.clock() - began)


def _finish(st, outcome, cfg, root: Path, report: Optional[Path], wall: float) -> None:
    from flows.run_output import print_run, write_run_report

    if report:
        write_run_report(report, outcome=outcome)
    if outcome.unchanged:
        say(outcome.unchanged)
        return
    print_run(cli_base.out, outcome, cfg, root, tracking_uri(), report)
    _report_seconds(st, outcome.parent_run_id, wall)


def _unchanged(cfg, root: Path, st, report: Optional[Path]) -> bool:
    """Before the flow: when the champion has this run's key, say so and stop (exit 0)."""
    from flows.unchanged import early_check

    with st.stage("run key"):
        unchanged = early_check(cfg, root)
    if unchanged:
        if report:
            from flows.run_output import write_run_report

            write_run_report(report, unchanged=unchanged)
        say(unchanged)
    return bool(unchanged)


def _run_flow(st, cfg, root: Path, report: Optional[Path], ask_unchanged: bool, flow_args: tuple):
    """The flow (called with `flow_args`) under its Prefect API. While a temporary server starts, this process
    asks whether anything changed and imports what the flow needs: only the wait beyond that counts as
    orchestration start-up. None when nothing changed (the server is then stopped without being waited for)."""
    from flows.processes import prefect_api
    from pipeline.core.stages import HANDOFF

    def meanwhile(starting: bool) -> bool:
        if ask_unchanged and _unchanged(cfg, root, st, report):
            return True
        with st.stage("imports"):
            from flows.training import training_flow  # noqa: F401  Prefect, MLflow, torch, scikit-learn

            if starting:  # hidden behind the server's start: what the stages would import on the critical path
                import great_expectations  # noqa: F401  validation
                import matplotlib.pyplot  # noqa: F401  plots
                import torch._dynamo  # noqa: F401  the first optimizer's construction

        return False

    def measured() -> float:
        return st.seconds.get("imports", 0.0) + st.seconds.get("run key", 0.0)

    started, before = st.clock(), measured()
    with prefect_api(meanwhile) as unchanged:
        if unchanged:
            return None
        st.add("orchestration start-up", st.clock() - started - (measured() - before))
        HANDOFF.give(st)  # the flow adds the time until its body starts, then its own stages
        from flows.training import training_flow

        outcome = training_flow(*flow_args)
        returned = st.clock()
    st.add("orchestration shut-down", st.clock() - returned)
    return outcome


def _report_seconds(st, parent_run_id: str, wall: float) -> None:
    """The per-stage seconds in the summary and on the parent run (the last stages ran after it ended)."""
    from pipeline.tracking import runs

    say(st.line(wall))
    runs.log_values(parent_run_id, metrics={**st.metrics(), "time.wall_s": round(wall, 3),
                                            "time.overhead_s": round(st.overhead_s(wall), 3)})


def _follow(cfg) -> None:
    from pipeline.core import distributed
    from pipeline.core.data import load_data, split_dataset
    from pipeline.core.device import resolve_device
    from pipeline.core.follower import follow

    split = split_dataset(load_data(cfg.data.path, cfg.data), cfg.data.test_size, cfg.data.split_seed)
    try:
        follow(split, cfg.train, resolve_device(cfg.train.device))
    finally:
        distributed.shutdown()


@app.command()
def validate(config: Optional[Path] = ConfigOpt, data: Optional[str] = DataOpt, set_: list[str] = SetOpt) -> None:
    """Run only the data validation stage; the report goes to validation.report_dir."""
    from pipeline.core.data import load_data
    from pipeline.core.validation.report import write_report
    from pipeline.core.validation.dataset import validate_dataset

    root, cfg = resolve(config, data, None, set_)
    ds = load_data(cfg.data.path, cfg.data)
    report = validate_dataset(ds, root / cfg.validation.suite, cfg.validation, cfg.data)
    paths = write_report(report, root / cfg.validation.report_dir)
    for warning in report.warnings:
        cli_base.err.print(f"warning: {warning}", markup=False, highlight=False)
    report.raise_if_failed(where=str(paths["report"].parent))
    say(f"data validation passed: {len(report.checks)} checks on {report.rows} rows ({report.suite}), "
         f"{len(report.warnings)} warning(s); report {paths['report']}, Data Docs {paths['data_docs']}, "
         f"label suspects {paths['label_issues']} ({len(report.label_suspects)} rows)")


expectations_app = typer.Typer(no_args_is_help=True, help="Great Expectations suites under expectations/.")
app.add_typer(expectations_app, name="expectations")


@expectations_app.command("init")
def expectations_init(data: str = typer.Option(..., "--data", help="a trusted reference CSV/Parquet file or folder"),
                      name: str = typer.Option(..., "--name", help="suite name; writes expectations/NAME.json"),
                      label: Optional[str] = typer.Option(None, "--label", help="label column (default: config)"),
                      force: bool = typer.Option(False, "--force", help="overwrite an existing suite (default: off)"),
                      config: Optional[Path] = ConfigOpt) -> None:
    """Write a suite (schema, ranges, label set, class shares) inferred from a reference file, for review."""
    from dataclasses import replace

    from pipeline.core.data import load_data
    from pipeline.core.validation.suite import infer_suite, write_suite

    root, cfg = resolve(config, data)
    label_column = label or cfg.data.label_column
    ds = load_data(cfg.data.path, replace(cfg.data, label_column=label_column))
    suite = infer_suite(ds.frame, name, label_column, data, cfg.data.categorical_columns)
    path = write_suite(suite, root / "expectations", force)
    say(f"wrote {path} ({len(suite['expectations'])} expectations from {len(ds.frame)} rows); review it, "
         "then point validation.suite at it and commit it")


@app.command()
def sweep(config: Optional[Path] = ConfigOpt, data: Optional[str] = DataOpt,
          set_: list[str] = typer.Option([], "--set", help="override a config key, e.g. --set "
                                                           "sweep.batch_sizes=128,512 (default: none)"),
          quiet: bool = QuietOpt) -> None:
    """Train every available precision (and sweep.batch_sizes) as nested runs; log the trade-off table and
    Pareto plot; name the precision the gate would pick. Registers nothing."""
    resolve(config, data, None, set_)  # a bad config stops here, before Prefect starts
    use_progress(quiet)
    from flows.processes import prefect_api
    from flows.sweep import sweep_flow

    with prefect_api():
        outcome = sweep_flow(str(config) if config else None, data, set_)
    say(outcome.table)
    picks = "; ".join(f"batch {b}: {p or 'nothing passed'}" for b, p in outcome.picks)
    say(f"The gate would pick: {picks}. Pareto plot {outcome.plot}; parent run {outcome.parent_run_id} "
         f"in {tracking_uri()}")


@app.command("noise-floor")
def noise_floor(config: Optional[Path] = ConfigOpt, data: Optional[str] = DataOpt,
                seeds: Optional[int] = typer.Option(None, "--seeds",
                                                    help="fp32 trainings (default: sweep.noise_seeds, 5)"),
                set_: list[str] = SetOpt, quiet: bool = QuietOpt) -> None:
    """Train fp32 with N seeds; report the spread of every gated figure and the tolerances it suggests."""
    resolve(config, data, None, [*set_, *([f"sweep.noise_seeds={seeds}"] if seeds is not None else [])])
    use_progress(quiet)
    from flows.processes import prefect_api
    from flows.sweep import noise_floor_flow

    with prefect_api():
        outcome = noise_floor_flow(str(config) if config else None, data, set_, seeds)
    say(outcome.report)
    tight = [r.config_key for r in outcome.rows if r.tighter_than_noise]
    say(("Tighter than the noise (fp32 alone can fail them): " + ", ".join(tight)) if tight else
         "Every configured tolerance is looser than the seed-to-seed noise.")
    say(f"Parent run {outcome.parent_run_id} in {tracking_uri()}")
