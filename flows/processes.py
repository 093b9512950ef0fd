"""What an mpops process starts besides itself, and how it stops: nothing it started may outlive it.

- Prefect's temporary API server (no PREFECT_API_URL): Prefect would start it as a child process that
  outlives a parent killed with SIGKILL. mpops starts it itself, with Linux's PR_SET_PDEATHSIG, so the
  kernel kills it when mpops dies, however it dies; on the way out mpops stops it first.
- SIGTERM, how workers, schedulers and CI stop a job, unwinds the process like Ctrl+C: MLflow runs end
  KILLED, a half-made model version is deleted, the server stops; exit 143. Should the unwinding hang
  (a tracking server that accepts connections but never answers), the process exits after TERM_GRACE_S.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from pipeline.core.errors import ServiceUnavailable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
TERM_GRACE_S = 20.0
DRAIN_S = 5.0  # Prefect's log and event workers flush to the server before it stops


def _die_with(parent: int, prctl) -> None:
    """In the child, between fork and exec: SIGKILL when the parent dies; and at once if it already has."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _pdeathsig_hook():
    if not sys.platform.startswith("linux"):
        return None  # elsewhere the server stops on the way out, and a SIGKILL leaves it behind
    return functools.partial(_die_with, os.getpid(), ctypes.CDLL(None, use_errno=True).prctl)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_server(extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """The same server Prefect's temporary one is (uvicorn with Prefect's app factory, no UI), on 127.0.0.1,
    started and not waited for: the caller imports what it needs meanwhile. `extra_env` (its PREFECT_HOME,
    say) comes last."""
    port = _free_port()
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
           **_settings_env(), **(extra_env or {})}
    prefect_dir = Path(importlib.util.find_spec("prefect").origin).parent  # without importing Prefect here
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_dir.parent), "--factory",
            "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port), "--log-level",
            "error", "--lifespan", "on"]
    server = subprocess.Popen(argv, env=env, preexec_fn=_pdeathsig_hook())  # noqa: PLW1509  before any training thread
    return server, f"http://127.0.0.1:{port}/api"


def _settings_env() -> dict[str, str]:
    """Prefect settings made in this process (a test's temporary settings), for the server; none before Prefect
    is imported, when the environment it inherits says it all."""
    if "prefect.settings" not in sys.modules:
        return {}
    from prefect.settings import get_current_settings

    return get_current_settings().to_environment_variables(exclude_unset=True)


def wait_ready(server: subprocess.Popen, url: str, timeout: float | None = None) -> None:
    import httpx
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    timeout = timeout or PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    stop_server(server)
    raise ServiceUnavailable(f"Prefect's temporary server did not start within {timeout:g} s (exit code "
                             f"{server.returncode}); start one (`prefect server start`) and set PREFECT_API_URL")


def start_server(extra_env: dict[str, str] | None = None, timeout: float | None = None
                 ) -> tuple[subprocess.Popen, str]:
    """launch_server, then wait until it answers. Stop it with stop_server."""
    server, url = launch_server(extra_env)
    wait_ready(server, url, timeout)
    return server, url


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@contextlib.contextmanager
def prefect_api(meanwhile: Callable[[bool], object] | None = None) -> Iterator[object]:
    """For a command's flows: SIGTERM ends them as Terminated, and their Prefect API is PREFECT_API_URL's
    server, else a temporary one of this process, stopped on the way out. `meanwhile(starting)` (the command's
    checks and heavy imports) runs while that server starts (`starting` is False where there is none to wait
    for): its start-up is then off the critical path. Yields what `meanwhile` returned; a truthy value means
    no flow will run, so nobody waits for the server."""
    # Launched before Prefect is imported (a second and more) unless the environment names a server; should
    # Prefect's own settings (a profile) name one, this early server is stopped unused.
    early = None if "prefect.settings" in sys.modules or os.environ.get("PREFECT_API_URL") else launch_server()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with _stopped_by_sigterm():
        if PREFECT_API_URL.value():
            if early is not None:
                stop_server(early[0])
            yield meanwhile(False) if meanwhile is not None else None
            return
        server, url = early or launch_server()
        try:
            result = meanwhile(True) if meanwhile is not None else None
            if result:
                yield result
                return
            wait_ready(server, url)
            with temporary_settings(updates={PREFECT_API_URL: url}):
                try:
                    yield result
                finally:
                    drain_workers()
        finally:
            stop_server(server)


def drain_workers() -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=DRAIN_S)
    EventsWorker.drain_all(timeout=DRAIN_S)


class Terminated(SystemExit):
    """SIGTERM, as an exception: it unwinds the process (and every `finally`) like Ctrl+C."""


def _on_sigterm(signum: int, frame) -> None:
    watchdog = threading.Timer(TERM_GRACE_S, os._exit, args=(128 + signum,))
    watchdog.daemon = True
    watchdog.start()
    raise Terminated(128 + signum)


def exit_at_once(code: int) -> None:
    """After SIGTERM, once the clean-up above has run: no interpreter finalization, whose garbage collection
    over torch, pandas, Prefect and MLflow objects takes seconds to tens of seconds on a loaded machine."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@contextlib.contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM raises Terminated (exit 143) in the main thread; during a flow run Prefect's own handler comes
    first (the flow run ends Crashed), then hands the signal on to this one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
