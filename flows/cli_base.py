"""What every `mpops` command shares: the Typer app, the consoles and the common options."""
from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train in mixed precision, gate against fp32, register in MLflow.")
err = Console(stderr=True, soft_wrap=True)
# CI logs are not terminals: rich would fold the summary table to 80 columns there.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)

ConfigOpt = typer.Option(None, "--config", help="YAML config file (default: none, the built-in defaults)")
DataOpt = typer.Option(None, "--data", help="CSV/Parquet file or folder (default: data/ as pinned by data.dvc)")
SetOpt = typer.Option([], "--set", help="override a config key: --set train.epochs=5 (default: none)")
QuietOpt = typer.Option(False, "--quiet", "-q", help="no progress bars and only Prefect's warnings (default: off)")


def say(text: str) -> None:
    out.print(text, markup=False, highlight=False)


def use_progress(quiet: bool) -> None:
    """Progress bars on a terminal, plain epoch lines in CI logs; --quiet: neither, and Prefect says only warnings."""
    from pipeline.render.progress import setup_progress

    setup_progress("auto", quiet)
    if quiet:
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"  # read when Prefect's settings load, after this point


def tracking_uri() -> str:
    from pipeline.core.project import project_root
    from pipeline.tracking.store import setup_tracking

    return setup_tracking(project_root())
ModelUriOpt = typer.Option(None, "--model-uri", help="(default: models:/NAME@champion, NAME from the config)")
