"""The bundled digits set: written from scikit-learn (no download) and checked against data.dvc."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.errors import ConfigError, DataValidationError

BUNDLED_FILE = "digits.csv"


def write_bundled_digits(folder: str | Path) -> Path:
    """Write scikit-learn's digits (shipped inside the package, no download) byte-for-byte reproducibly."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    frame = pd.DataFrame(digits.data.astype(np.int64), columns=[f"pixel_{i}" for i in range(64)])
    frame["label"] = digits.target.astype(np.int64)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    target = out / BUNDLED_FILE
    frame.to_csv(target, index=False, lineterminator="\n")
    return target


def _dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True)


def _pinned_and_actual_md5(root: Path) -> tuple[str, str]:
    """The md5 data.dvc records for data/, and DVC's hash of data/ as it is on disk (no cache needed)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        out = repo.stage.load_one(str(root / "data.dvc")).outs[0]
        actual = out.get_hash().value if (root / "data").is_dir() else ""
        return out.hash_info.value, actual


def restore_bundled_data(root: str | Path = ".") -> str:
    """`dvc pull` when the remote has data/, else rebuild from scikit-learn and check it against data.dvc.

    Returns how the data was obtained. A rebuilt copy whose hash differs from data.dvc is an error:
    the pinned data is never silently replaced.
    """
    root = Path(root).resolve()
    if not (root / "data.dvc").is_file():
        raise ConfigError(f"data.dvc not found in {root}; run from the project root")
    pinned, actual = _pinned_and_actual_md5(root)
    if actual == pinned:
        return f"present, md5 {pinned} as pinned by data.dvc"
    if actual:
        raise DataValidationError(
            f"data: data/ differs from data.dvc (md5 {actual}, pinned {pinned}); "
            "`dvc checkout` restores the pinned copy, `dvc add data` pins the new one"
        )
    pulled = _dvc("pull", "data.dvc", cwd=root)
    if pulled.returncode == 0 and _pinned_and_actual_md5(root)[1] == pinned:
        return f"dvc pull, md5 {pinned}"
    write_bundled_digits(root / "data")
    actual = _pinned_and_actual_md5(root)[1]
    if actual != pinned:
        raise DataValidationError(
            f"data: the digits set rebuilt from scikit-learn has md5 {actual}, but data.dvc pins {pinned}; "
            "pull the pinned data from the DVC remote (`dvc pull`) or ask who changed data.dvc"
        )
    # Cache and push the verified copy so the next restore can `dvc pull` it.
    _dvc("commit", "--force", "data.dvc", cwd=root)
    _dvc("push", "data.dvc", cwd=root)
    return f"rebuilt from scikit-learn, md5 {pinned} matches data.dvc"
