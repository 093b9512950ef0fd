"""`mpops`: the command line of DESIGN.md. Exit codes come from pipeline.errors."""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from pipeline.errors import ConfigError, MpopsError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train in mixed precision, gate against fp32, register in MLflow.")
err = Console(stderr=True, soft_wrap=True)
# CI logs are not terminals: rich would fold the summary table to 80 columns there.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)

ConfigOpt = typer.Option(None, "--config", help="YAML config file")
DataOpt = typer.Option(None, "--data", help="CSV/Parquet file or folder (default: data/ pinned by data.dvc)")
QuietOpt = typer.Option(False, "--quiet", "-q", help="no progress bars and only Prefect's warnings")


def _progress(quiet: bool) -> None:
    """Progress bars on a terminal, plain epoch lines in CI logs; --quiet: neither, and Prefect says only warnings."""
    import os

    from pipeline.progress import setup_progress

    setup_progress("auto", quiet)
    if quiet:
        # read when Prefect's settings load: the flows are imported only after this point
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"


def _config(config: Optional[Path], data: Optional[str], sets: list[str], precisions: Optional[str] = None):
    from pipeline.config import load_config, with_data_path, with_precisions
    from pipeline.setup import project_root

    root = project_root()
    cfg = load_config(config, sets)
    if precisions:
        cfg = with_precisions(cfg, precisions)
    if data:
        cfg = with_data_path(cfg, str(Path(data).resolve()))
    elif not Path(cfg.data.path).is_absolute():
        cfg = with_data_path(cfg, str(root / cfg.data.path))
    return root, cfg


@app.command()
def run(config: Optional[Path] = ConfigOpt, data: Optional[str] = DataOpt,
        precisions: Optional[str] = typer.Option(None, "--precisions", help="comma-separated: fp32 (required), tf32, bf16, fp16, bf16-true, fp8"),
        set_: list[str] = typer.Option([], "--set", help="override a config key: --set train.epochs=5"),
        resume: bool = typer.Option(False, "--resume", help="continue a killed run from its last checkpoints"),
        report: Optional[Path] = typer.Option(None, "--report", help="write the gate report (JSON) here, pass or fail"),
        quiet: bool = QuietOpt) -> None:
    """Validate, train every precision, gate against fp32, register the selected model."""
    from pipeline.setup import setup_tracking
    from pipeline.summary import summary_table, what_it_bought

    from pipeline import distributed

    root, cfg = _config(config, data, set_, precisions)
    if not distributed.init_from_env().is_main:
        _follow(cfg)  # torchrun: this rank only trains; rank 0 runs the pipeline and logs
        return
    if resume and distributed.world().size > 1:
        raise ConfigError("--resume continues single-process runs only; run it without torchrun")
    _progress(quiet)
    uri = setup_tracking(root)
    from flows.training import training_flow

    try:
        outcome = training_flow(cfg, root, resume)
    except MpopsError as e:
        if report:
            gate = getattr(e, "gate_report", None)
            _write_report(report, {"passed": False, "exit_code": e.exit_code, "error": str(e),
                                   "gate": json.loads(gate.to_json()) if gate else None})
        raise
    finally:
        distributed.announce("done")
        distributed.shutdown()
    paragraph = ci_summary(outcome)
    if report:
        _write_report(report, {"passed": True, "exit_code": 0, "summary": paragraph,
                               "gate": json.loads(outcome.gate.to_json()),
                               "registered": {"model": outcome.registration.model_name,
                                              "version": outcome.registration.version,
                                              "aliases": list(outcome.registration.aliases)}})
    out.print(summary_table(list(outcome.results), list(outcome.evals), outcome.gate))
    dropped = [f"{r.precision}: {r.reason}" for r in outcome.probes if r.dropped]
    if dropped:
        out.print(f"Dropped by the precision probe before full training: {'; '.join(dropped)}", markup=False)
    out.print(f"What reduced precision bought on this machine: {what_it_bought(outcome.gate) or 'n/a'}")
    out.print(f"Gate: {outcome.gate.reason}")
    reg = outcome.registration
    out.print(f"Registered {reg.model_name} version {reg.version} with alias(es) {', '.join(reg.aliases)} "
              f"({reg.champion_reason}).")
    out.print(f"Tracking store: {uri}  (look: mlflow ui --backend-store-uri {uri}); parent run {outcome.parent_run_id}")
    out.print(f"Summary: {paragraph}", markup=False)
    written = [f"validation report {root / cfg.validation.report_dir}",
               f"parent run {_run_link(outcome.parent_run_id)} (gate/report.md, gate/report.json, tradeoff.md, "
               "plots/*.png, validation/)",
               f"model models:/{reg.model_name}/{reg.version} (model_card.md, monitoring/ reference and fp32 twin)"]
    if report:
        written.append(f"gate report {report}")
    out.print("Written: " + "; ".join(written), markup=False)


def _run_link(run_id: str) -> str:
    """A clickable URL for a tracking server; the run ID for a local store (open it with `mlflow ui`)."""
    from pipeline.registry import run_url

    url = run_url(run_id)
    return url if url.startswith("http") else run_id


def ci_summary(outcome) -> str:
    """One paragraph for a CI log: what was trained, what the gate chose and why, what was registered."""
    gate, reg = outcome.gate, outcome.registration
    dropped = [f"{r.precision} ({r.reason})" for r in outcome.probes if r.dropped]
    selected = gate.verdict(gate.selected)
    return (f"mpops trained {', '.join(r.precision for r in outcome.results)}"
            + (f"; the probe dropped {'; '.join(dropped)}" if dropped else "")
            + f". The gate selected {gate.selected} ({selected.speedup:.2f}x fp32 training throughput, accuracy "
            f"{selected.accuracy:.4f}, {selected.accuracy_delta:+.4f} vs fp32, {selected.memory_ratio:.2f}x peak memory)."
            f" Registered {reg.model_name} version {reg.version} as {', '.join(reg.aliases)}; {reg.champion_reason}.")


def _write_report(path: Path, body: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2) + "\n")


def _follow(cfg) -> None:
    from pipeline import distributed
    from pipeline.data import load_dataset, split_dataset
    from pipeline.precision import resolve_device

    split = split_dataset(load_dataset(cfg.data.path, cfg.data.label_column), cfg.data.test_size,
                          cfg.data.split_seed)
    try:
        distributed.follow(split, cfg.train, resolve_device(cfg.train.device))
    finally:
        distributed.shutdown()


@app.command()
def validate(config: Optional[Path] = ConfigOpt, data: Optional[str] = DataOpt,
             set_: list[str] = typer.Option([], "--set")) -> None:
    """Run only the data validation stage; the report goes to validation.report_dir."""
    from pipeline.data import load_dataset
    from pipeline.validate import validate_frame, write_report

    root, cfg = _config(config, data, set_)
    ds = load_dataset(cfg.data.path, cfg.data.label_column)
    report = validate_frame(ds.frame, root / cfg.validation.suite, cfg.validation, cfg.data)
    paths = write_report(report, root / cfg.validation.report_dir)
    for warning in report.warnings:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    report.raise_if_failed(where=str(paths["report"].parent))
    out.print(f"data validation passed: {len(report.checks)} checks on {report.rows} rows ({report.suite}), "
              f"{len(report.warnings)} warning(s); report {paths['report']}, Data Docs {paths['data_docs']}, "
              f"label suspects {paths['label_issues']} ({len(report.label_suspects)} rows)", markup=False)


expectations_app = typer.Typer(no_args_is_help=True, help="Great Expectations suites under expectations/.")
app.add_typer(expectations_app, name="expectations")


@expectations_app.command("init")
def expectations_init(data: str = typer.Option(..., "--data", help="a trusted reference CSV/Parquet file or folder"),
                      name: str = typer.Option(..., "--name", help="suite name; writes expectations/NAME.json"),
                      label: Optional[str] = typer.Option(None, "--label", help="label column (default: config)"),
                      force: bool = typer.Option(False, "--force", help="overwrite an existing suite"),
                      config: Optional[Path] = ConfigOpt) -> None:
    """Write a suite (schema, ranges, label set, class shares) inferred from a reference file, for review."""
    from pipeline.data import load_dataset
    from pipeline.suite import infer_suite, write_suite

    root, cfg = _config(config, data, [])
    label_column = label or cfg.data.label_column
    ds = load_dataset(cfg.data.path, label_column)
    suite = infer_suite(ds.frame, name, label_column, data)
    path = write_suite(suite, root / "expectations", force)
    out.print(f"wrote {path} ({len(suite['expectations'])} expectations from {len(ds.frame)} rows); review it, "
              f"then point validation.suite at it and commit it", markup=False)


@app.command()
def predict(input: str = typer.Option(..., "--input", help="CSV/Parquet of the feature columns"),
            output: str = typer.Option(..., "--output", help="where to write the rows with a prediction column"),
            model_uri: Optional[str] = typer.Option(None, "--model-uri"),
            config: Optional[Path] = ConfigOpt) -> None:
    """Score a file with the champion (or --model-uri)."""
    from pipeline.predict import predict_file
    from pipeline.setup import setup_tracking

    root, cfg = _config(config, None, [])
    setup_tracking(root)
    uri = model_uri or f"models:/{cfg.registry.model_name}@champion"
    n = predict_file(uri, input, output, cfg.data.label_column)
    out.print(f"wrote {n} predictions from {uri} to {output}")


@app.command()
def sweep(config: Optional[Path] = ConfigOpt, data: Optional[str] = DataOpt,
          set_: list[str] = typer.Option([], "--set", help="e.g. --set sweep.batch_sizes=128,512"),
          quiet: bool = QuietOpt) -> None:
    """Train every available precision (and sweep.batch_sizes) as nested runs; log the trade-off table and
    Pareto plot; name the precision the gate would pick. Registers nothing."""
    from pipeline.setup import setup_tracking

    root, cfg = _config(config, data, set_)
    _progress(quiet)
    uri = setup_tracking(root)
    from flows.sweep import sweep_flow

    outcome = sweep_flow(cfg, root)
    out.print(outcome.table, markup=False)
    picks = "; ".join(f"batch {b}: {p or 'nothing passed'}" for b, p in outcome.picks)
    out.print(f"The gate would pick: {picks}. Pareto plot {outcome.plot}; parent run {outcome.parent_run_id} "
              f"in {uri}", markup=False)


@app.command("noise-floor")
def noise_floor(config: Optional[Path] = ConfigOpt, data: Optional[str] = DataOpt,
                seeds: Optional[int] = typer.Option(None, "--seeds", help="fp32 trainings (default sweep.noise_seeds)"),
                set_: list[str] = typer.Option([], "--set"), quiet: bool = QuietOpt) -> None:
    """Train fp32 with N seeds; report the spread of every gated figure and the tolerances it suggests."""
    from pipeline.setup import setup_tracking

    root, cfg = _config(config, data, set_ + ([f"sweep.noise_seeds={seeds}"] if seeds is not None else []))
    _progress(quiet)
    uri = setup_tracking(root)
    from flows.sweep import noise_floor_flow

    outcome = noise_floor_flow(cfg, root, cfg.sweep.noise_seeds)
    out.print(outcome.report, markup=False)
    tight = [r.config_key for r in outcome.rows if r.tighter_than_noise]
    out.print(("Tighter than the noise (fp32 alone can fail them): " + ", ".join(tight)) if tight else
              "Every configured tolerance is looser than the seed-to-seed noise.", markup=False)
    out.print(f"Parent run {outcome.parent_run_id} in {uri}", markup=False)


@app.command()
def monitor(batch: str = typer.Option(..., "--batch", help="CSV/Parquet of the feature columns (label optional)"),
            retrain: bool = typer.Option(False, "--retrain", help="on drift, start the training flow"),
            model_uri: Optional[str] = typer.Option(None, "--model-uri", help="default models:/NAME@champion"),
            config: Optional[Path] = ConfigOpt,
            set_: list[str] = typer.Option([], "--set", help="override a config key: --set monitor.psi_threshold=0.3")
            ) -> None:
    """Compare a batch with the champion's training reference; exit 5 on drift."""
    from rich.table import Table

    from pipeline.errors import DriftDetected
    from pipeline.setup import setup_tracking

    import os

    root, cfg = _config(config, None, set_)
    setup_tracking(root)
    # The champion and its reference are downloaded on every call; progress bars only clutter the verdict.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from flows.monitoring import monitor_flow

    outcome = monitor_flow(cfg, root, batch, retrain, model_uri)
    report = outcome.report
    version = f" version {outcome.model_version}" if outcome.model_version else ""
    out.print(f"Monitored {batch}: {report.rows} rows against {outcome.model_uri}{version} ({report.precision})",
              markup=False)
    if report.drifted_features:
        table = Table(title=f"Drifted features ({len(report.drifted_features)} of {len(report.features)})")
        for col in ("feature", "PSI", "KS p-value", "reference mean", "batch mean", "beyond fp16"):
            table.add_column(col, justify="left" if col == "feature" else "right")
        for f in report.drifted_features[:20]:
            table.add_row(f.name, f"{f.psi:.3f}", f"{f.ks_pvalue:.2g}", f"{f.reference_mean:.3g}",
                          f"{f.batch_mean:.3g}", str(f.fp16_overflow))
        out.print(table)
    acc = "n/a (no labels)" if report.accuracy is None else f"{report.accuracy:.4f}"
    agree = "n/a" if report.agreement is None else f"{report.agreement:.2%}"
    ref_agree = "n/a" if report.reference_agreement is None else f"{report.reference_agreement:.2%}"
    out.print(f"Drifted features {report.drifted_share:.1%}; prediction PSI {report.prediction_psi:.3f}; accuracy "
              f"{acc} (registered {report.reference_accuracy:.4f}); fp32-twin agreement {agree} (registered "
              f"{ref_agree}); values beyond fp16 range {report.fp16_overflow}", markup=False)
    out.print(f"Report: {outcome.report_dir}; MLflow run {outcome.run_id} (experiment {cfg.monitor.experiment})",
              markup=False)
    if outcome.retrain:
        out.print(f"Retrain: {outcome.retrain}", markup=False)
    checks = ", ".join(r.split(":")[0] for r in report.reasons)
    out.print(f"Verdict: drift ({checks})" if report.drifted else f"Verdict: {report.verdict}", markup=False)
    if report.drifted:
        todo = (f"retrain: {outcome.retrain}" if outcome.retrain
                else "check the data source, or retrain (`mpops run`, or `mpops monitor --retrain`)")
        raise DriftDetected(f"monitor: drift detected in {batch} ({checks}); report {outcome.report_dir / 'report.md'}; "
                            f"{todo}",
                            detail="\n".join(f"  {r}" for r in report.reasons))


@app.command("restore-data")
def restore_data() -> None:
    """Restore data/ as pinned by data.dvc: dvc pull, else rebuild and verify against data.dvc."""
    from pipeline.data import restore_bundled_data
    from pipeline.setup import project_root

    how = restore_bundled_data(project_root())
    out.print(f"data/: {how}")


@app.command()
def serve() -> None:
    """Run the scheduled deployments of prefect.yaml (nightly retraining, hourly monitoring) in this
    process until stopped, without a work pool or worker; needs a Prefect server (PREFECT_API_URL)."""
    import os

    from prefect import serve as prefect_serve
    from prefect.settings import PREFECT_API_URL

    from flows.deployments import held_by_work_pools, served_deployments
    from pipeline.setup import project_root

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
    out.print(f"serving {', '.join(d.name for d in deployments)} from {root} (Ctrl+C stops)", markup=False)
    prefect_serve(*deployments)


def main(argv: Optional[list[str]] = None) -> None:
    from pipeline.setup import disable_telemetry, prefect_defaults

    disable_telemetry()
    prefect_defaults()
    try:
        app(args=argv, standalone_mode=False)
    except MpopsError as e:
        err.print(f"error: {e}", markup=False, highlight=False)
        if e.detail:
            err.print(e.detail, markup=False, highlight=False)
        sys.exit(e.exit_code)
    except (typer.Exit, SystemExit) as e:
        sys.exit(getattr(e, "exit_code", getattr(e, "code", 0)))
    except typer.Abort:
        sys.exit(130)
    except Exception as e:  # click's usage errors are handled below; anything else is a bug
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(2)
        frame = traceback.extract_tb(e.__traceback__)[-1]
        err.print(f"internal error: {type(e).__name__}: {e} (at {frame.filename}:{frame.lineno}); "
                  "this is a bug, please report it with the traceback below", markup=False, highlight=False)
        traceback.print_exc()
        sys.exit(1)


if __name__ == "__main__":
    main()
