"""The servability probe: a registered version loaded in a fresh Python process, from the registry, by a plain
MLflow client, in an empty working folder; its report is judged by pipeline.core.servability."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from pipeline.core.servability import ProbeReport

SCRIPT = Path(__file__).with_name("serve_probe_script.py")


def _env() -> dict[str, str]:
    """This process's environment (the tracking URI, MLflow's HTTP budget) without the project on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return env


def probe(model_uri: str, rows: pd.DataFrame, repeats: int = 20, timeout_s: float = 90.0) -> ProbeReport:
    """Load `model_uri` in a new interpreter and score `rows` there (the version's input example too)."""
    with tempfile.TemporaryDirectory(prefix="mpops-serve-probe-") as tmp:
        folder = Path(tmp)
        script = Path(shutil.copy(SCRIPT, folder / "probe.py"))
        rows.to_parquet(folder / "rows.parquet", index=False)
        out = folder / "report.json"
        try:
            done = subprocess.run([sys.executable, str(script), model_uri, str(folder / "rows.parquet"), str(out),
                                   str(repeats)], cwd=folder, env=_env(), capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return ProbeReport(error=f"the probe process did not finish within {timeout_s:.0f} s")
        if not out.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return ProbeReport(error=f"the probe process exited {done.returncode}: {last[:300]}")
        return ProbeReport.from_json(json.loads(out.read_text()))
