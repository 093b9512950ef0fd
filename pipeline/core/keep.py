"""Drifted batches kept: copied under a dated folder, pinned with DVC, and gathered for retraining.

A batch that drifted is the first sample of the world the champion no longer fits; `mpops monitor`
keeps it as `KEEP_DIR/YYYY-MM-DD/<name>` with a DVC pointer beside it (`<name>.dvc`: md5, size, as
`dvc add` writes it; inside the project `dvc add` itself runs, so the copy is also in DVC's cache).
Retraining takes the pinned training data plus every kept batch whose rows all carry a label; a batch
without (all) labels is kept but never trained on.
"""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from pipeline.core.provenance import dvc_hash


@dataclass(frozen=True)
class KeptBatch:
    path: Path  # the kept copy
    pointer: Path  # its .dvc file
    md5: str  # DVC's hash of the copy (a folder's ends in .dir)
    labelled: bool  # every row has a label: retraining may use it
    cached: bool  # `dvc add` put it in the project's DVC cache


def _write_pointer(path: Path, md5: str) -> Path:
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    pointer = path.with_name(path.name + ".dvc")
    pointer.write_text(yaml.safe_dump({"outs": [{"md5": md5, "size": size, "hash": "md5", "path": path.name}]},
                                      sort_keys=False))
    return pointer


def _dvc_add(path: Path, root: Path) -> bool:
    """`dvc add` where the project is a DVC repository and the copy lies inside it; False elsewhere."""
    if not (root / ".dvc").is_dir() or not path.resolve().is_relative_to(root.resolve()):
        return False
    done = subprocess.run([sys.executable, "-m", "dvc", "add", "--quiet", str(path.resolve())], cwd=root,
                          capture_output=True, text=True)
    return done.returncode == 0


def keep_batch(source: str | Path, keep_dir: Path, root: Path, labelled: bool, day: dt.date | None = None
               ) -> KeptBatch:
    """Copy `source` (file or folder) to keep_dir/YYYY-MM-DD/, pin it, and return where and what it is.
    The name gains the first 8 characters of its md5, so a batch kept twice is one copy."""
    src = Path(source)
    folder = keep_dir / (day or dt.datetime.now(dt.timezone.utc).date()).isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    md5 = dvc_hash(src)
    target = folder / f"{src.stem}-{md5[:8]}{src.suffix}"
    if not target.exists():
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, target)
    cached = _dvc_add(target, root)
    pointer = target.with_name(target.name + ".dvc")
    if not cached or not pointer.is_file():
        pointer = _write_pointer(target, md5)
    # Beside the pointer and, like it, in git: whether retraining may use the batch travels with it.
    (folder / f"{target.name}.labelled").write_text("true\n" if labelled else "false\n")
    return KeptBatch(target, pointer, md5, labelled, cached)


def kept_batches(keep_dir: Path) -> list[KeptBatch]:
    """Every batch kept so far, oldest first."""
    found = []
    for pointer in sorted(keep_dir.glob("*/*.dvc")):
        path = pointer.with_name(pointer.name[:-4])
        if not path.exists():
            continue  # data not checked out here: `dvc checkout` restores it
        md5 = str((yaml.safe_load(pointer.read_text())["outs"][0]).get("md5", ""))
        flag = pointer.with_name(path.name + ".labelled")
        labelled = flag.is_file() and flag.read_text().strip() == "true"
        found.append(KeptBatch(path, pointer, md5, labelled, False))
    return found


def training_folder(pinned: Path, kept: list[KeptBatch], folder: Path, columns: list[str]) -> Path:
    """A folder of the pinned data plus the labelled kept batches, in the training data's columns, for
    `mpops run --data`; extra columns of a batch are dropped, a batch lacking one is skipped."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    files = sorted(pinned.glob("*.csv")) + sorted(pinned.glob("*.parquet")) if pinned.is_dir() else [pinned]
    for f in files:
        (folder / f"pinned-{f.name}").symlink_to(f.resolve())
    for k in kept:
        if k.labelled and k.path.is_file():
            frame = pd.read_csv(k.path) if k.path.suffix == ".csv" else pd.read_parquet(k.path)
            if all(c in frame.columns for c in columns):
                frame[columns].to_csv(folder / f"drifted-{k.path.parent.name}-{k.path.stem}.csv", index=False)
    return folder
