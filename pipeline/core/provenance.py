"""Where a run's inputs came from: data hashes, code commit, environment versions."""
from __future__ import annotations

import hashlib
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import yaml

from pipeline.core.errors import DataValidationError

TRACKED_PACKAGES = ("torch", "mlflow", "prefect", "great_expectations", "dvc")


@dataclass(frozen=True)
class Provenance:
    dvc_md5: str  # the md5 recorded in data.dvc ("" when the project has none)
    data_md5: str  # DVC's hash of the file or folder read (a folder's ends in .dir, as in data.dvc)
    data_files: tuple[str, ...]
    data_is_pinned: bool  # data_md5 is the md5 data.dvc records
    git_commit: str
    git_dirty: bool
    versions: tuple[tuple[str, str], ...]
    python: str
    file_md5: str = ""  # md5 of the bytes read (all files, in order)
    # DVC's hash of each file read, when there are several (a retraining on pinned data plus kept batches):
    # the record of every piece of data that went in.
    sources: tuple[tuple[str, str], ...] = ()

    def as_tags(self) -> dict[str, str]:
        tags = {
            "data.md5": self.data_md5,
            "data.file_md5": self.file_md5,
            "data.pinned": str(self.data_is_pinned).lower(),
            "data.dvc_md5": self.dvc_md5,
            "git.commit": self.git_commit,
            "git.dirty": str(self.git_dirty).lower(),
            "python.version": self.python,
        }
        tags.update({f"{name}.version": v for name, v in self.versions})
        if self.sources:
            tags["data.sources"] = ", ".join(f"{name}={md5}" for name, md5 in self.sources)[:5000]
        return tags


def dvc_md5(project_root: Path, data_path: str | Path | None = None) -> str:
    """The md5 the data's own pointer (`<data>.dvc` beside it, as `dvc add` and `mpops init` write it)
    records, else the project's data.dvc."""
    beside = Path(f"{data_path}.dvc") if data_path is not None else None
    pointer = beside if beside is not None and beside.is_file() else project_root / "data.dvc"
    if not pointer.is_file():
        return ""
    outs = (yaml.safe_load(pointer.read_text()) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", ""))


def files_md5(files: tuple[str, ...]) -> str:
    h = hashlib.md5()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def dvc_hash(path: str | Path, project_root: Path | None = None) -> str:
    """DVC's own hash of a file or folder, as `dvc add` would record it (a folder's ends in .dir); inside
    the project its .dvcignore files apply, as in DVC. Nothing is written: the staging store is in memory."""
    from dvc.ignore import DvcIgnoreFilter
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs import LocalFileSystem, MemoryFileSystem

    path = Path(path).resolve()
    fs = LocalFileSystem()
    inside = project_root is not None and path.is_relative_to(project_root.resolve())
    ignore = DvcIgnoreFilter(fs, str(project_root.resolve() if inside else path if path.is_dir() else path.parent))
    _, _, obj = build(HashFileDB(MemoryFileSystem(), "/mpops-staging"), str(path), fs, "md5", dry_run=True,
                      ignore=ignore)
    return str(obj.hash_info.value)


def _git(root: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _version(package: str) -> str:
    if package == "torch":
        import torch  # the local build tag (+cpu, +cu124) matters here

        return torch.__version__
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def collect_provenance(project_root: Path, data_files: tuple[str, ...], data_path: str | Path | None = None
                       ) -> Provenance:
    """`data_path` is the file or folder read (default: the one file, or the folder of the files)."""
    root = project_root.resolve()
    if data_path is None:
        data_path = data_files[0] if len(data_files) == 1 else Path(data_files[0]).parent
    pinned, read = dvc_md5(root, Path(data_path).resolve()), dvc_hash(data_path, root)
    return Provenance(
        dvc_md5=pinned,
        data_md5=read,
        file_md5=files_md5(data_files),
        sources=tuple((Path(f).name, dvc_hash(f)) for f in data_files) if len(data_files) > 1 else (),
        data_files=data_files,
        data_is_pinned=bool(pinned) and read == pinned,
        git_commit=_git(root, "rev-parse", "HEAD") or "unknown",
        git_dirty=bool(_git(root, "status", "--porcelain", "--untracked-files=no")),
        versions=tuple((p.replace("_", "-"), _version(p)) for p in TRACKED_PACKAGES),
        python=platform.python_version(),
    )


def require_pinned(prov: Provenance, data_path: str | Path) -> None:
    """`--require-pinned`: only the data data.dvc pins may train (CI retrains what the repository pins)."""
    if not prov.data_is_pinned:
        raise DataValidationError(
            f"data: --require-pinned: {data_path} has DVC md5 {prov.data_md5}, but data.dvc pins "
            f"{prov.dvc_md5 or 'nothing'}; restore the pinned data (`mpops restore-data`) or pin this data "
            "(`dvc add`, then commit data.dvc)")
