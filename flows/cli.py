"""`mpops`: the command line (docs/design.md lists the commands and exit codes). Each command calls a flow."""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from flows.common import prepare_process, resolve
from pipeline.core.errors import ConfigError, DriftDetected, MpopsError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train in mixed precision, gate against fp32, register in MLflow.")
err = Console(stderr=True, soft_wrap=True)
# CI logs are not terminals: rich would fold the summary table to 80 columns there.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)

ConfigOpt = typer.Option(None, "--config", help="YAML config file")
DataOpt = typer.Option(None, "--data", help="CSV/Parquet file or folder (default: data/ pinned by data.dvc)")
SetOpt = typer.Option([], "--set", help="override a config key: --set train.epochs=5")
QuietOpt = typer.Option(False, "--quiet", "-q", help="no progress bars and only Prefect's warnings")


def _say(text: str) -> None:
    out.print(text, markup=False, highlight=False)


def _progress(quiet: bool) -> None:
    """Progress bars on a terminal, plain epoch lines in CI logs; --quiet: neither, and Prefect says only warnings."""
    from pipeline.render.progress import setup_progress

    setup_progress("auto", quiet)
    if quiet:
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"  # read when Prefect's settings load, after this point


def _tracking() -> str:
    from pipeline.core.project import project_root
    from pipeline.tracking.store import setup_tracking

    return setup_tracking(project_root())


@app.command()
def run(config: Optional[Path] = ConfigOpt, data: Optional[str] = DataOpt,
        precisions: Optional[str] = typer.Option(None, "--precisions",
                                                 help="comma-separated: fp32 (required), tf32, bf16, fp16, bf16-true, fp8"),
        set_: list[str] = SetOpt,
        resume: bool = typer.Option(False, "--resume", help="continue a killed run from its last checkpoints"),
        report: Optional[Path] = typer.Option(None, "--report", help="write the gate report (JSON) here, pass or fail"),
        require_pinned: bool = typer.Option(False, "--require-pinned",
                                            help="refuse (exit 3) data other than what data.dvc pins"),
        quiet: bool = QuietOpt) -> None:
    """Validate, train every precision, gate against fp32, register the selected model."""
    from pipeline.core import distributed

    root, cfg = resolve(config, data, precisions, set_)
    if not distributed.init_from_env().is_main:
        _follow(cfg)  # torchrun: this rank only trains; rank 0 runs the pipeline and logs
        return
    if resume and distributed.world().size > 1:
        raise ConfigError("--resume continues single-process runs only; run it without torchrun")
    _progress(quiet)
    from flows.processes import prefect_api
    from flows.training import training_flow
    from flows.run_output import print_run, write_run_report

    try:
        with prefect_api():
            outcome = training_flow(str(config) if config else None, data, precisions, set_, resume, require_pinned)
    except MpopsError as e:
        if report:
            write_run_report(report, error=e)
        raise
    finally:
        distributed.announce("done")
        distributed.shutdown()
    if report:
        write_run_report(report, outcome=outcome)
    print_run(out, outcome, cfg, root, _tracking(), report)


def _follow(cfg) -> None:
    from pipeline.core import distributed
    from pipeline.core.data import load_dataset, split_dataset
    from pipeline.core.device import resolve_device
    from pipeline.core.follower import follow

    split = split_dataset(load_dataset(cfg.data.path, cfg.data.label_column), cfg.data.test_size, cfg.data.split_seed)
    try:
        follow(split, cfg.train, resolve_device(cfg.train.device))
    finally:
        distributed.shutdown()


@app.command()
def validate(config: Optional[Path] = ConfigOpt, data: Optional[str] = DataOpt, set_: list[str] = SetOpt) -> None:
    """Run only the data validation stage; the report goes to validation.report_dir."""
    from pipeline.core.data import load_dataset
    from pipeline.core.validation.report import write_report
    from pipeline.core.validation.validate import validate_frame

    root, cfg = resolve(config, data, None, set_)
    ds = load_dataset(cfg.data.path, cfg.data.label_column)
    report = validate_frame(ds.frame, root / cfg.validation.suite, cfg.validation, cfg.data)
    paths = write_report(report, root / cfg.validation.report_dir)
    for warning in report.warnings:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    report.raise_if_failed(where=str(paths["report"].parent))
    _say(f"data validation passed: {len(report.checks)} checks on {report.rows} rows ({report.suite}), "
         f"{len(report.warnings)} warning(s); report {paths['report']}, Data Docs {paths['data_docs']}, "
         f"label suspects {paths['label_issues']} ({len(report.label_suspects)} rows)")


expectations_app = typer.Typer(no_args_is_help=True, help="Great Expectations suites under expectations/.")
app.add_typer(expectations_app, name="expectations")


@expectations_app.command("init")
def expectations_init(data: str = typer.Option(..., "--data", help="a trusted reference CSV/Parquet file or folder"),
                      name: str = typer.Option(..., "--name", help="suite name; writes expectations/NAME.json"),
                      label: Optional[str] = typer.Option(None, "--label", help="label column (default: config)"),
                      force: bool = typer.Option(False, "--force", help="overwrite an existing suite"),
                      config: Optional[Path] = ConfigOpt) -> None:
    """Write a suite (schema, ranges, label set, class shares) inferred from a reference file, for review."""
    from pipeline.core.data import load_dataset
    from pipeline.core.validation.suite import infer_suite, write_suite

    root, cfg = resolve(config, data)
    label_column = label or cfg.data.label_column
    ds = load_dataset(cfg.data.path, label_column)
    suite = infer_suite(ds.frame, name, label_column, data)
    path = write_suite(suite, root / "expectations", force)
    _say(f"wrote {path} ({len(suite['expectations'])} expectations from {len(ds.frame)} rows); review it, "
         "then point validation.suite at it and commit it")


@app.command()
def predict(input: str = typer.Option(..., "--input", help="CSV/Parquet of the feature columns"),
            output: str = typer.Option(..., "--output", help="where to write the rows with a prediction column"),
            model_uri: Optional[str] = typer.Option(None, "--model-uri"),
            config: Optional[Path] = ConfigOpt) -> None:
    """Score a file with the champion (or --model-uri)."""
    from pipeline.tracking.predict import predict_file

    _, cfg = resolve(config)
    _tracking()
    uri = model_uri or f"models:/{cfg.registry.model_name}@champion"
    n = predict_file(uri, input, output, cfg.data.label_column)
    _say(f"wrote {n} predictions from {uri} to {output}")


@app.command()
def sweep(config: Optional[Path] = ConfigOpt, data: Optional[str] = DataOpt,
          set_: list[str] = typer.Option([], "--set", help="e.g. --set sweep.batch_sizes=128,512"),
          quiet: bool = QuietOpt) -> None:
    """Train every available precision (and sweep.batch_sizes) as nested runs; log the trade-off table and
    Pareto plot; name the precision the gate would pick. Registers nothing."""
    resolve(config, data, None, set_)  # a bad config stops here, before Prefect starts
    _progress(quiet)
    from flows.processes import prefect_api
    from flows.sweep import sweep_flow

    with prefect_api():
        outcome = sweep_flow(str(config) if config else None, data, set_)
    _say(outcome.table)
    picks = "; ".join(f"batch {b}: {p or 'nothing passed'}" for b, p in outcome.picks)
    _say(f"The gate would pick: {picks}. Pareto plot {outcome.plot}; parent run {outcome.parent_run_id} "
         f"in {_tracking()}")


@app.command("noise-floor")
def noise_floor(config: Optional[Path] = ConfigOpt, data: Optional[str] = DataOpt,
                seeds: Optional[int] = typer.Option(None, "--seeds", help="fp32 trainings (default sweep.noise_seeds)"),
                set_: list[str] = SetOpt, quiet: bool = QuietOpt) -> None:
    """Train fp32 with N seeds; report the spread of every gated figure and the tolerances it suggests."""
    resolve(config, data, None, [*set_, *([f"sweep.noise_seeds={seeds}"] if seeds is not None else [])])
    _progress(quiet)
    from flows.processes import prefect_api
    from flows.sweep import noise_floor_flow

    with prefect_api():
        outcome = noise_floor_flow(str(config) if config else None, data, set_, seeds)
    _say(outcome.report)
    tight = [r.config_key for r in outcome.rows if r.tighter_than_noise]
    _say(("Tighter than the noise (fp32 alone can fail them): " + ", ".join(tight)) if tight else
         "Every configured tolerance is looser than the seed-to-seed noise.")
    _say(f"Parent run {outcome.parent_run_id} in {_tracking()}")


@app.command()
def monitor(batch: str = typer.Option(..., "--batch", help="CSV/Parquet of the feature columns (label optional)"),
            retrain: bool = typer.Option(False, "--retrain", help="on drift, start the training flow"),
            model_uri: Optional[str] = typer.Option(None, "--model-uri", help="default models:/NAME@champion"),
            config: Optional[Path] = ConfigOpt,
            set_: list[str] = typer.Option([], "--set", help="override a config key: --set monitor.psi_threshold=0.3")
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

    _say(f"data/: {restore_bundled_data(project_root())}")


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
    _say(f"serving {', '.join(d.name for d in deployments)} from {root} (Ctrl+C stops)")
    prefect_serve(*deployments)


def _exit_for(e: BaseException, argv: list[str]) -> int:
    """The exit code of an exception that escaped a command, after printing what the user needs."""
    from flows.usage import is_usage_error, usage_error_text

    if is_usage_error(e):
        err.print(usage_error_text(e, app, argv), markup=False, highlight=False)
        return 2
    from pipeline.tracking.store import is_unreachable, unreachable_error

    e = unreachable_error(e) if not isinstance(e, MpopsError) and is_unreachable(e) else e
    if isinstance(e, MpopsError):
        err.print(f"error: {e}", markup=False, highlight=False)
        if e.detail:
            err.print(e.detail, markup=False, highlight=False)
        return e.exit_code
    frame = traceback.extract_tb(e.__traceback__)[-1]
    err.print(f"internal error: {type(e).__name__}: {e} (at {frame.filename}:{frame.lineno}); "
              "this is a bug, please report it with the traceback below", markup=False, highlight=False)
    traceback.print_exc()
    return 1


def main(argv: Optional[list[str]] = None) -> None:
    from flows.processes import Terminated, exit_at_once

    prepare_process()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=argv, standalone_mode=False, prog_name="mpops")
    except Terminated as e:
        err.print("error: stopped by SIGTERM: open MLflow runs end KILLED, an unfinished version is deleted",
                  markup=False, highlight=False)
        exit_at_once(e.code)
    except (typer.Exit, SystemExit) as e:
        sys.exit(getattr(e, "exit_code", getattr(e, "code", 0)))
    except typer.Abort:
        sys.exit(130)
    except Exception as e:  # noqa: BLE001  every escape becomes one line and an exit code
        sys.exit(_exit_for(e, argv))


if __name__ == "__main__":
    main()
