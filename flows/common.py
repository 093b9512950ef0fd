"""What the flows, the command line and the deployments share: process set-up and config resolution.

Every flow takes plain parameters (paths, strings, a mapping of overrides) and resolves them here,
the same way for `mpops run` and for a deployment's flow run.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.config import Config, with_data_path
from pipeline.core.config_load import Overrides, load_config, with_precisions
from pipeline.core.errors import MpopsError
from pipeline.core.project import disable_telemetry, project_root

if TYPE_CHECKING:  # torch and scikit-learn: seconds of imports that `mpops --help` or a bad config must not pay
    from pipeline.core.evaluate import EvalResult
    from pipeline.core.train import TrainResult

# Prefect's temporary server (no PREFECT_API_URL) gets 20 s to start by default; a loaded 2-core
# laptop or CI runner can take longer, and the run then dies before doing anything.
PREFECT_DEFAULTS = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
PREFECT_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


@dataclass(frozen=True)
class Trained:
    """One precision's training, its test evaluation and its MLflow run."""

    result: TrainResult
    eval: EvalResult
    run_id: str


class UserErrorsWithoutTraceback(logging.Filter):
    """A user error (bad config, bad data, a failed gate) is no crash: Prefect logs its one line, no traceback.

    The flow run still ends Failed with the error as its state: only the log record changes."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, MpopsError):
            record.msg, record.args = "stopped: %s%s", (str(error), f"\n{error.detail}" if error.detail else "")
            record.exc_info = record.exc_text = None
        return True


def prepare_process() -> None:
    """Telemetry off, Prefect's start-up budget, quiet user errors. Idempotent; every entry calls it first."""
    disable_telemetry()
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    for name in PREFECT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, UserErrorsWithoutTraceback) for f in logger.filters):
            logger.addFilter(UserErrorsWithoutTraceback())


def resolve(config: str | Path | None = None, data: str | None = None, precisions: str | None = None,
            overrides: Overrides = None) -> tuple[Path, Config]:
    """The project root and the validated config: defaults, the YAML file, overrides, precisions, data path;
    then the device check (the config itself was read without touching a device)."""
    root = project_root()
    cfg = load_config(config, overrides)
    if precisions:
        cfg = with_precisions(cfg, precisions)
    if data:
        cfg = with_data_path(cfg, str(Path(data).resolve()))
    elif not Path(cfg.data.path).is_absolute():
        cfg = with_data_path(cfg, str(root / cfg.data.path))
    from pipeline.core.device import check_device

    check_device(cfg.train.device, cfg.precisions)
    return root, cfg


def no_retry_on_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retries are for I/O: bad data stays bad on a second read, and a tracking server that failed MLflow's
    own retries for the whole budget (registry.unreachable_after_s) would only cost that budget again."""
    from pipeline.tracking.store import is_unreachable

    error = state.result(raise_on_failure=False)
    return not isinstance(error, MpopsError) and not (isinstance(error, BaseException) and is_unreachable(error))
