"""Serving and rollback as a user runs them: versions registered with the servability check, `mpops serve-model`
in a subprocess on 127.0.0.1, `mpops rollback`, then the previous version served again."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from pipeline.core.config_load import load_config
from pipeline.core.data import load_dataset, split_dataset
from pipeline.core.promotion import PromotionDecision
from pipeline.core.train import train
from pipeline.tracking import history, registry
from pipeline.tracking.runs import start_run
from tests.conftest import fresh_store
from tests.integration.test_servability import _check
from tests.integration.test_servers import LOCAL_ONLY, free_port, port_is_free

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MPOPS = str(Path(sys.executable).with_name("mpops"))
NAME = "digits-classifier"
COMPLETE = {"gate.passed": "true", "validation.passed": "true"}


@pytest.fixture(scope="module")
def store(tmp_path_factory, digits_frame):
    """Two versions, each servability-checked and champion in turn; a third that failed its gate."""
    home = tmp_path_factory.mktemp("serving")
    uri = fresh_store(home / "mlflow.db")
    saved = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    digits_frame.to_csv(home / "digits.csv", index=False)
    cfg = load_config(overrides=["train.hidden_size=32", "train.hidden_layers=1", "train.epochs=3"])
    sp = split_dataset(load_dataset(home / "digits.csv"), 0.2, 0)
    result = train(sp, cfg.train, "fp32", device=torch.device("cpu"))
    for n, decision in enumerate([PromotionDecision(True, "no champion yet"), PromotionDecision(True, "better", "1")]):
        logged = registry.log_model(start_run("t", "fp32", str(home / "art")), result, sp)
        reg = registry.register(NAME, logged, {"precision": "fp32", **COMPLETE}, f"v{n + 1}", decision,
                                check=_check(sp, result))
        assert reg.serve_check.passed and "champion" in reg.aliases, reg.serve_check.reason
    logged = registry.log_model(start_run("t", "fp32", str(home / "art")), result, sp)
    registry.register(NAME, logged, {"precision": "fp32", "gate.passed": "false", "validation.passed": "true"},
                      "v3", PromotionDecision(False, "told to stay", "2"))
    fp8 = dataclasses.replace(result, precision="fp8")  # a bundle that says fp8: this CPU cannot serve it
    logged = registry.log_model(start_run("t", "fp8", str(home / "art")), fp8, sp)
    registry.register(NAME, logged, {"precision": "fp8", **COMPLETE}, "v4", PromotionDecision(False, "stay", "2"))
    env = {**os.environ, **LOCAL_ONLY, "MLFLOW_TRACKING_URI": uri, "PREFECT_HOME": str(home / "prefect"),
           "NO_COLOR": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    yield env, sp
    mlflow.set_tracking_uri(saved)
    mlflow.set_registry_uri(saved)


def mpops(env, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([MPOPS, *args], env=env, capture_output=True, text=True, timeout=timeout)


def call(port: int, path: str, body: dict | None = None) -> tuple[int, object, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


class Server:
    """`mpops serve-model` in its own process group, stopped (and checked gone) on exit."""

    def __init__(self, env, *args):
        self.port = free_port()
        self.proc = subprocess.Popen([MPOPS, "serve-model", "--port", str(self.port), *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)

    def __enter__(self):
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()[1][-3000:]
            try:
                if call(self.port, "/ping")[0] == 200:
                    return self
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        raise AssertionError("serve-model did not answer /ping")

    def __exit__(self, *exc):
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.out, self.err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise
        assert port_is_free(self.port)
        with pytest.raises(ProcessLookupError):
            os.killpg(self.proc.pid, 0)  # nothing of the group is left


def rows(sp, n=3) -> dict:
    frame = registry.input_example(sp, n)
    return {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}


def test_serve_score_refuse_a_wrong_schema_and_stop(store):
    env, sp = store
    with Server(env) as server:
        status, headers, body = call(server.port, "/invocations", rows(sp))
        assert status == 200, body
        assert len(json.loads(body)["predictions"]) == 3
        assert headers["X-Mpops-Model-Version"] == "2" and headers["X-Mpops-Served-Precision"] == "fp32"
        wrong = {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0]]}}
        status, _, body = call(server.port, "/invocations", wrong)
        assert 400 <= status < 500 and "pixel_0" in body, (status, body)
        assert call(server.port, "/invocations", rows(sp, 1))[0] == 200  # still up after the bad request
    assert server.proc.returncode is not None


def test_a_precision_this_device_lacks_is_refused_unless_the_fallback_is_asked_for(store):
    env, sp = store
    if torch.cuda.is_available():
        pytest.skip("a CUDA device may run fp8")
    r = mpops(env, "serve-model", "--model-uri", f"models:/{NAME}/4", "--port", str(free_port()))
    assert r.returncode == 2, r.stderr[-2000:]
    first = r.stderr.splitlines()[0]
    assert first.startswith("error: serving: the model was trained in fp8") and "fallback bf16" in first
    assert "--allow-fallback" in first
    with Server(env, "--model-uri", f"models:/{NAME}/4", "--allow-fallback") as server:
        status, headers, body = call(server.port, "/invocations", rows(sp))
        assert status == 200, body
        assert headers["X-Mpops-Trained-Precision"] == "fp8" and headers["X-Mpops-Served-Precision"] == "bf16"
    assert "FALLBACK: trained in fp8" in server.out


def test_rollback_refuses_a_failed_version_then_returns_to_the_previous_champion(store):
    env, sp = store
    r = mpops(env, "rollback", "--to", "3", "--reason", "try")
    assert r.returncode == 2 and r.stderr.startswith("error: rollback: version 3") and "failed its gate" in r.stderr
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
    r = mpops(env, "rollback", "--reason", "v2 misbehaves in production")
    assert r.returncode == 0, r.stderr[-2000:]
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    tags = client.get_model_version(NAME, "1").tags
    assert tags["rollback.reason"] == "v2 misbehaves in production" and tags["rollback.from"] == "2"
    assert "@" in tags["rollback.by"] and tags["rollback.time"]
    last = history.read(client, NAME)[-1]
    assert (last["alias"], last["version"]) == ("champion", "1") and "v2 misbehaves" in last["reason"]
    with Server(env) as server:
        status, headers, _ = call(server.port, "/invocations", rows(sp))
        assert status == 200 and headers["X-Mpops-Model-Version"] == "1"
    r = mpops(env, "rollback", "--to", "3", "--reason", "forced on purpose", "--force")
    assert r.returncode == 0 and str(client.get_model_version_by_alias(NAME, "champion").version) == "3"
    assert "forced although it failed its gate" in history.read(client, NAME)[-1]["reason"]
