"""Where a run's inputs came from: data hashes, code commit, environment versions."""
from __future__ import annotations

import hashlib
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import yaml

TRACKED_PACKAGES = ("torch", "mlflow", "prefect", "great_expectations", "dvc")


@dataclass(frozen=True)
class Provenance:
    dvc_md5: str  # the md5 recorded in data.dvc ("" when the project has none)
    data_md5: str  # md5 of the bytes actually read (all files, in order)
    data_files: tuple[str, ...]
    data_is_pinned: bool  # the data read is data/ as tracked by data.dvc
    git_commit: str
    git_dirty: bool
    versions: tuple[tuple[str, str], ...]
    python: str

    def as_tags(self) -> dict[str, str]:
        tags = {
            "data.md5": self.dvc_md5,
            "data.file_md5": self.data_md5,
            "data.pinned": str(self.data_is_pinned).lower(),
            "git.commit": self.git_commit,
            "git.dirty": str(self.git_dirty).lower(),
            "python.version": self.python,
        }
        tags.update({f"{name}.version": v for name, v in self.versions})
        return tags


def dvc_md5(project_root: Path) -> str:
    pointer = project_root / "data.dvc"
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


def collect_provenance(project_root: Path, data_files: tuple[str, ...]) -> Provenance:
    root = project_root.resolve()
    pinned_dir = (root / "data").resolve()
    pinned = bool(data_files) and all(Path(f).resolve().is_relative_to(pinned_dir) for f in data_files)
    return Provenance(
        dvc_md5=dvc_md5(root),
        data_md5=files_md5(data_files),
        data_files=data_files,
        data_is_pinned=pinned,
        git_commit=_git(root, "rev-parse", "HEAD") or "unknown",
        git_dirty=bool(_git(root, "status", "--porcelain", "--untracked-files=no")),
        versions=tuple((p.replace("_", "-"), _version(p)) for p in TRACKED_PACKAGES),
        python=platform.python_version(),
    )
