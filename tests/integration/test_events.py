"""On a real `prefect server` on 127.0.0.1: the monitor's drift event starts the retraining deployment, through the
trigger prefect.yaml declares."""
from __future__ import annotations

import time
import types

import pytest

from tests.conftest import ROOT
from tests.integration.test_servers import _api, prefect_server  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_drift_event_creates_a_nightly_retrain_flow_run(prefect_server, monkeypatch):  # noqa: F811
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.events.worker import EventsWorker

    from flows import verdicts
    from flows.deployments import served_deployments

    monkeypatch.chdir(ROOT)
    with _api(prefect_server):
        [retrain] = [d for d in served_deployments(ROOT) if d.name == "nightly-retrain"]
        deployment_id = retrain.apply()
        only_this = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        with get_client(sync_client=True) as client:
            assert client.read_flow_runs(deployment_filter=only_this) == []
            # A worker left from an earlier server of this process would send the events there.
            EventsWorker.drain_all(timeout=30)
            report = types.SimpleNamespace(reasons=("feature drift: 3 of 64 features drifted",))
            # A monitor that retrains itself (--retrain) emits the event too, but the trigger leaves it alone.
            verdicts.emit_drift(report, "digits-classifier", "1", "incoming/a.csv", None, retraining=True)
            verdicts.emit_drift(report, "digits-classifier", "1", "incoming/b.csv", None)
            EventsWorker.drain_all(timeout=30)
            deadline, runs = time.monotonic() + 90, []
            while not runs and time.monotonic() < deadline:
                time.sleep(1)
                runs = client.read_flow_runs(deployment_filter=only_this)
            assert runs, "no flow run of nightly-retrain within 90 s of the drift event"
            time.sleep(10)  # time for a second run, which must not come
            runs = client.read_flow_runs(deployment_filter=only_this)
            assert len(runs) == 1 and runs[0].deployment_id == deployment_id
