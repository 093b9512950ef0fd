"""The run key: one hash of everything a trained model depends on, so a run whose inputs are the champion's
can stop before it trains anything.

It covers the data (DVC's md5 of what is read), the code (the package's git commit plus a hash of its
uncommitted changes, and the user's model file when `train.model` names one), the resolved config (the
data path aside: the data is its md5; the validation suite by content), the torch version and the
device kind. Two runs with one key would train the same model, up to the nondeterminism of the kernels.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
from pathlib import Path

from pipeline.core.config import Config

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding pipeline/ and flows/
PACKAGES = ("pipeline", "flows")
TAG = "run.key"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=PACKAGE_ROOT, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.decode(errors="replace").strip() if out.returncode == 0 else None


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def package_version() -> tuple[str, str]:
    """(commit, hash of the uncommitted changes to the package: "" when clean). Outside a git checkout
    (an installed package) the commit is "none" and the hash covers every source file of the package."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        files = sorted(f for p in PACKAGES for f in (PACKAGE_ROOT / p).rglob("*.py"))
        return "none", _hash_files(files)
    dirty = _git("status", "--porcelain", "--untracked-files=all", "--", *PACKAGES) or ""
    changed = sorted(PACKAGE_ROOT / line[3:].split(" -> ")[-1].strip('"') for line in dirty.splitlines() if line)
    return commit, _hash_files(changed) if changed else ""


def _hash_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(PACKAGE_ROOT) if f.is_relative_to(PACKAGE_ROOT) else f).encode())
        h.update(_file_hash(f).encode())
    return h.hexdigest()


def model_source_hash(model: str, root: Path) -> str:
    """The user's model code: `path/file.py:build` by the file's bytes, `package.module:build` by its module's
    source file; "" for a zoo name (the package's own code)."""
    if ":" not in model:
        return ""
    ref = model.rsplit(":", 1)[0]
    if ref.endswith(".py"):
        path = Path(ref) if Path(ref).is_absolute() else root / ref
        return _file_hash(path)
    try:
        spec = importlib.util.find_spec(ref)
    except (ImportError, ValueError):
        spec = None
    return _file_hash(Path(spec.origin)) if spec is not None and spec.origin else "missing"


def resolved_config(cfg: Config, root: Path) -> dict:
    flat = {k: v for k, v in cfg.as_flat_dict().items() if k != "data.path"}
    suite = Path(cfg.validation.suite)
    flat["validation.suite.sha256"] = _file_hash(suite if suite.is_absolute() else root / suite)
    return flat


def run_key(cfg: Config, root: Path, data_md5: str, torch_version: str, device_kind: str) -> tuple[str, dict]:
    """The key and what it hashes (kept with the run, so a changed key can be explained)."""
    commit, dirty = package_version()
    parts = {"data.md5": data_md5, "code.commit": commit, "code.dirty": dirty,
             "code.model": model_source_hash(cfg.train.model, root), "config": resolved_config(cfg, root),
             "torch.version": torch_version, "device": device_kind}
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32], parts
