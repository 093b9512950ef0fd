"""A lock around the champion's compare-and-set, kept in the model registry itself.

MLflow has no conditional alias update, and two `mpops run` processes that share a tracking store
(a SQLite file, or PostgreSQL behind `mlflow server`) share nothing else. Creating a registered
model is atomic, though: the store refuses a second model of one name (a unique key in its
database). So the lock is a registered model, `<model>.champion-lock`, created to take the lock
and deleted to release it; it exists for the second or two a registration takes. A holder that
was killed leaves it behind: one older than `stale_after_s` is deleted by the next process waiting.
"""
from __future__ import annotations

import contextlib
import os
import random
import socket
import time
from typing import Iterator

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

SUFFIX = ".champion-lock"


def lock_name(model_name: str) -> str:
    return model_name + SUFFIX


def _taken(client: MlflowClient, name: str) -> bool:
    try:
        client.create_registered_model(name, tags={"mpops.lock.owner": f"{socket.gethostname()}:{os.getpid()}"},
                                       description="mpops: held while a run moves the champion alias; "
                                                   "deleted when it is done")
        return True
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return False


def _break_if_stale(client: MlflowClient, name: str, stale_after_s: float) -> None:
    try:
        created = client.get_registered_model(name).creation_timestamp / 1000
    except MlflowException:  # released meanwhile
        return
    if time.time() - created > stale_after_s:
        with contextlib.suppress(MlflowException):  # another waiter may break it first
            client.delete_registered_model(name)


@contextlib.contextmanager
def champion_lock(client: MlflowClient, model_name: str, wait_s: float = 300.0,
                  stale_after_s: float = 120.0) -> Iterator[None]:
    name = lock_name(model_name)
    deadline = time.monotonic() + wait_s
    while not _taken(client, name):
        if time.monotonic() > deadline:
            raise TimeoutError(f"registry: {name} stayed taken for {wait_s:.0f} s; another run is registering")
        _break_if_stale(client, name, stale_after_s)
        time.sleep(random.uniform(0.1, 0.4))  # jittered: waiters must not retry in lockstep
    try:
        yield
    finally:
        with contextlib.suppress(MlflowException):
            client.delete_registered_model(name)
