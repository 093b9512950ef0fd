"""`mpops init`: a new project on the user's own data, in one command."""
from __future__ import annotations

import shlex
from pathlib import Path

import typer

from flows.cli_base import app, say


@app.command()
def init(data: str = typer.Option(..., "--data", help="the CSV/Parquet file or folder to train on"),
         name: str = typer.Option(..., "--name", help="names the config (NAME.yaml), the suite and the model"),
         label: str = typer.Option("label", "--label", help="the label column"),
         force: bool = typer.Option(False, "--force",
                                    help="overwrite files an earlier init wrote (default: off)")) -> None:
    """Write NAME.yaml, expectations/NAME.json (inferred from the data, for review) and the data's DVC pointer;
    print the command that runs the pipeline on it."""
    from pipeline.core import project_init
    from pipeline.core.data import load_dataset
    from pipeline.core.project import project_root
    from pipeline.core.validation.suite import infer_suite, write_suite

    root = project_root()
    path = Path(data).resolve()
    files = project_init.plan(root, path, name, force)  # refuses before anything is read or written
    frame = load_dataset(path, label).frame
    suite = infer_suite(frame, name, label, data)
    pointer = project_init.dvc_pointer(path, root)
    write_suite(suite, files.suite.parent, force=True)
    files.config.write_text(project_init.config_text(root, path, name, label))
    project_init.write_pointer(files.pointer, pointer)
    shown = [str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
             for p in (files.config, files.suite, files.pointer)]
    say(f"wrote {shown[0]} (config), {shown[1]} ({len(suite['expectations'])} expectations from {len(frame)} rows; "
        f"review it) and {shown[2]} (DVC md5 {pointer['outs'][0]['md5']}); commit them")
    say(f"run it: mpops run --config {shlex.quote(shown[0])}")
