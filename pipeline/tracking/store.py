"""Where MLflow keeps runs and models (MLFLOW_TRACKING_URI, else the embedded store under mlruns/), and how
long mpops waits for a tracking server that stops answering before it gives up (exit 6)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from pipeline.core.errors import ServiceUnavailable

# MLflow's own HTTP client settings, read on every request (mlflow.environment_variables).
RETRIES, BACKOFF, JITTER, TIMEOUT = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                                     "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "MLFLOW_HTTP_REQUEST_TIMEOUT")
MAX_RETRIES = 7  # MLflow's default
FAIL_FAST_TIMEOUT_S = 3


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded SQLite store under mlruns/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"


def setup_tracking(root: Path, unreachable_after_s: float | None = None) -> str:
    uri = tracking_uri(root)
    if uri.startswith("sqlite:///") and not os.environ.get("MLFLOW_TRACKING_URI"):
        (root / "mlruns").mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if unreachable_after_s is not None:
        os.environ.update(retry_settings(unreachable_after_s))
    return uri


def artifact_location(root: Path) -> str | None:
    """Artifacts beside the embedded store; a remote server chooses its own."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    return (root / "mlruns" / "artifacts").as_uri()


def _backoff_s(retries: int, jitter: float) -> float:
    """urllib3's sleeps before retry 1..n at backoff factor 1: 0, 2, 4, 8 ... s, each plus up to `jitter`."""
    return float(2 ** retries - 2 + (retries - 1) * jitter) if retries > 1 else 0.0


def retry_settings(budget_s: float, jitter: float = 1.0) -> dict[str, str]:
    """MLflow's HTTP retry settings whose worst case, every attempt timing out, fits in `budget_s`:
    at most half of it in back-off, the rest shared by the attempts' timeouts."""
    retries = 0
    while retries < MAX_RETRIES and _backoff_s(retries + 1, jitter) <= budget_s / 2 and \
            _backoff_s(retries + 1, jitter) + retries + 2 <= budget_s:
        retries += 1
    timeout = max(1, int((budget_s - _backoff_s(retries, jitter)) // (retries + 1)))
    return {RETRIES: str(retries), BACKOFF: "1", JITTER: str(jitter), TIMEOUT: str(timeout)}


def fail_fast() -> None:
    """One short attempt per request from now on: the server already failed the budget (or the process is
    stopping), and waiting it out again for every clean-up call would only delay the exit."""
    os.environ.update({RETRIES: "0", TIMEOUT: str(min(int(os.environ.get(TIMEOUT, "120")), FAIL_FAST_TIMEOUT_S))})


def is_unreachable(error: BaseException) -> bool:
    """An error of the connection to a tracking server (refused, timed out, 5xx after every retry), as opposed
    to an answer it gave; MLflow wraps them in MlflowException, the cause stays in the exception chain."""
    import requests

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (ServiceUnavailable, requests.ConnectionError, requests.Timeout,
                              requests.exceptions.RetryError)):
            return True
        error = error.__cause__ or error.__context__
    return False


def _reason(error: BaseException) -> str:
    text = str(error)
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text) or re.search(r"(too many \d+ error responses)", text)
    if found:
        return found.group(1).strip()
    return "timed out" if "timeout" in text.lower() else type(error).__name__


def unreachable_error(error: BaseException) -> ServiceUnavailable:
    """The one line for a tracking store that stopped answering; later requests fail fast."""
    fail_fast()
    if isinstance(error, ServiceUnavailable):
        return error
    return ServiceUnavailable(f"MLflow tracking store {mlflow.get_tracking_uri()} unreachable ({_reason(error)}); "
                              "nothing was registered")


def preflight() -> str:
    """One call to the tracking store before anything trains: a store that cannot be reached is exit 6 now,
    not after an hour of training."""
    uri = mlflow.get_tracking_uri()
    try:
        MlflowClient().search_experiments(max_results=1)
    except Exception as e:  # MLflow raises MlflowException, requests its own; only a connection failure is ours
        if is_unreachable(e):
            raise unreachable_error(e) from None
        raise
    return uri


def reachable() -> bool:
    """Whether the tracking store still answers (within the retry budget); when it does not, later requests
    fail fast, so that the clean-up after a dead server costs one budget, not one per request."""
    try:
        MlflowClient().search_experiments(max_results=1)
    except Exception as e:  # noqa: BLE001  only the connection matters here
        if is_unreachable(e):
            fail_fast()
            return False
        raise
    return True
