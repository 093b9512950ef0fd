"""`mpops init`: what a new project on the user's own data needs, as plain text and data.

Three files: `NAME.yaml` in the project folder (the config: data path, label column, suite, model
name, the model), `expectations/NAME.json` (the suite, inferred as `mpops expectations init` does)
and `<data>.dvc` beside the data (DVC's pointer, as `dvc add` writes it: md5, size, path).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.core.errors import ConfigError
from pipeline.core.provenance import dvc_hash

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
CONFIG_TEMPLATE = """\
# mpops config for {name}, written by `mpops init`. Keys left out keep their defaults (docs/design.md);
# `--set key=value` overrides any of them for one run.
data:
  path: {data}
  label_column: {label}
validation:
  suite: expectations/{name}.json  # inferred from the data: review it
registry:
  model_name: {name}
train:
  model: mlp  # or cnn, transformer, or a factory of your own: model.py:build (beside this file)
  # model_params: {{width: 256}}  # passed to the factory as its `params`
"""


@dataclass(frozen=True)
class InitPlan:
    config: Path
    suite: Path
    pointer: Path


def plan(root: Path, data: Path, name: str, force: bool) -> InitPlan:
    """Where the three files go; refuses (exit 2) a bad name, or existing files without `force`."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '-', '_' or '.' (it names the config, the suite "
                          "and the registered model)")
    files = InitPlan(root / f"{name}.yaml", root / "expectations" / f"{name}.json",
                     data.with_name(data.name + ".dvc"))
    existing = [str(p) for p in (files.config, files.suite, files.pointer) if p.exists()]
    if existing and not force:
        raise ConfigError(f"{', '.join(existing)} already exist; pass --force to overwrite")
    return files


def config_text(root: Path, data: Path, name: str, label: str) -> str:
    shown = data.relative_to(root) if data.is_relative_to(root) else data  # relative: the project can move
    return CONFIG_TEMPLATE.format(name=name, data=yaml.safe_dump(str(shown)).splitlines()[0],
                                  label=yaml.safe_dump(label).splitlines()[0])


def dvc_pointer(data: Path, root: Path) -> dict:
    """The content of `dvc add`'s pointer file for a file or folder (a folder's md5 ends in .dir); the md5 is
    the one a run computes as `data.md5`, so a run on this data is `data.pinned`."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs import LocalFileSystem, MemoryFileSystem

    _, meta, obj = build(HashFileDB(MemoryFileSystem(), "/mpops-staging"), str(data), LocalFileSystem(), "md5",
                         dry_run=True)
    out = {"md5": dvc_hash(data, root), "size": int(meta.size)}
    if meta.isdir:
        out["nfiles"] = int(meta.nfiles)
    return {"outs": [{**out, "hash": "md5", "path": data.name}]}


def write_pointer(target: Path, pointer: dict) -> None:
    target.write_text(yaml.safe_dump(pointer, sort_keys=False))
