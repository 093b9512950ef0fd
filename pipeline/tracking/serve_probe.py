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


class ProbeProcess:
    """The probe's interpreter, started ahead in an empty folder: it imports what any client imports while the
    run still logs the model, then waits on stdin for the version to load. Use as a context manager: a run
    that ends without a version to check leaves no process behind."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="mpops-serve-probe-")
        self.folder = Path(self._tmp.name)
        script = Path(shutil.copy(SCRIPT, self.folder / "probe.py"))
        self._process = subprocess.Popen([sys.executable, str(script), "--stdin"], cwd=self.folder, env=_env(),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)

    def __enter__(self) -> "ProbeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, model_uri: str, rows: pd.DataFrame, repeats: int, timeout_s: float) -> ProbeReport:
        rows.to_parquet(self.folder / "rows.parquet", index=False)
        out = self.folder / "report.json"
        line = json.dumps([model_uri, str(self.folder / "rows.parquet"), str(out), repeats]) + "\n"
        try:
            _, stderr = self._process.communicate(line, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return ProbeReport(error=f"the probe process did not finish within {timeout_s:.0f} s")
        if not out.exists():  # it died (while importing, say): its stderr says why
            last = (stderr.strip().splitlines() or ["no output"])[-1]
            return ProbeReport(error=f"the probe process exited {self._process.returncode}: {last[:300]}")
        return ProbeReport.from_json(json.loads(out.read_text()))

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.communicate()
        self._tmp.cleanup()


def probe(model_uri: str, rows: pd.DataFrame, repeats: int = 20, timeout_s: float = 90.0,
          started: ProbeProcess | None = None) -> ProbeReport:
    """Load `model_uri` in a new interpreter and score `rows` there (the version's input example too); in
    `started` when the caller started it ahead."""
    if started is not None:
        return started.run(model_uri, rows, repeats, timeout_s)
    with ProbeProcess() as process:
        return process.run(model_uri, rows, repeats, timeout_s)
