"""prefect.yaml and `mpops serve`: the same deployments, read as Prefect reads them; nothing is started."""
from __future__ import annotations

import pytest
import yaml

from tests.conftest import ROOT

SPEC = yaml.safe_load((ROOT / "prefect.yaml").read_text())


def test_prefect_yaml_is_valid_for_prefect_deploy():
    from prefect.cli.deploy._models import PrefectYamlModel, RawScheduleConfig
    from prefect.flows import load_flow_from_entrypoint

    model = PrefectYamlModel.model_validate(SPEC)
    assert [d.name for d in model.deployments] == ["nightly-retrain", "hourly-monitor", "batch-predict"]
    # Flow code stays where `prefect deploy` ran: no clone, no image.
    [pull] = SPEC["pull"]
    assert list(pull) == ["prefect.deployments.steps.set_working_directory"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ project-root.stdout }}"
    [build] = SPEC["build"]
    assert build["prefect.deployments.steps.run_shell_script"]["id"] == "project-root"
    for d in model.deployments:
        assert d.work_pool.name == "mpops-process"
        assert d.work_pool.job_variables["env"]["DO_NOT_TRACK"] == "true"
        for schedule in d.schedules or []:  # batch-predict runs on demand
            assert isinstance(schedule, RawScheduleConfig) and schedule.cron and schedule.timezone == "UTC"
        flow = load_flow_from_entrypoint(str(ROOT / d.entrypoint))
        flow.validate_parameters(d.parameters)  # the defaults in prefect.yaml fit the flow's signature


def test_schedules_are_nightly_and_hourly():
    from datetime import datetime, timezone

    from prefect.server.schemas.schedules import CronSchedule  # the server side computes the dates

    by_name = {d["name"]: d for d in SPEC["deployments"]}
    nightly = CronSchedule(**{k: by_name["nightly-retrain"]["schedules"][0][k] for k in ("cron", "timezone")})
    hourly = CronSchedule(**{k: by_name["hourly-monitor"]["schedules"][0][k] for k in ("cron", "timezone")})
    start = datetime(2026, 3, 28, 12, 30, tzinfo=timezone.utc)  # spans a European DST change: UTC ignores it
    nights = [d.astimezone(timezone.utc) for d in _next(nightly, start, 3)]
    assert [(d.day, d.hour, d.minute) for d in nights] == [(29, 2, 0), (30, 2, 0), (31, 2, 0)]
    hours = [d.astimezone(timezone.utc) for d in _next(hourly, start, 3)]
    assert [(d.hour, d.minute) for d in hours] == [(13, 0), (14, 0), (15, 0)]


def _next(schedule, start, n):
    import asyncio

    return asyncio.run(schedule.get_dates(n=n, start=start))


def test_served_deployments_match_prefect_yaml(monkeypatch):
    from flows.deployments import served_deployments

    monkeypatch.chdir(ROOT)
    served = served_deployments(ROOT)
    assert [d.name for d in served] == [s["name"] for s in SPEC["deployments"]]
    for dep, spec in zip(served, SPEC["deployments"]):
        assert dep.entrypoint == spec["entrypoint"]
        # the very flows the command line calls: no wrapper flows for deployments
        assert dep.entrypoint in ("flows/training.py:training_flow", "flows/monitoring.py:monitor_flow",
                                  "flows/predict.py:predict_flow")
        assert dep.parameters == spec["parameters"]
        assert dep.tags == spec["tags"]
        assert dep.work_pool_name is None  # `prefect.serve` runs them in its own process
        assert len(dep.schedules) == len(spec.get("schedules") or [])
        for schedule, wanted in zip(dep.schedules, spec.get("schedules") or []):
            assert schedule.schedule.cron == wanted["cron"] and schedule.schedule.timezone == wanted["timezone"]
            assert schedule.active is True


def test_serve_without_a_prefect_server_exits_2_with_one_line(capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.cli import main

    with temporary_settings(updates={PREFECT_API_URL: None}), pytest.raises(SystemExit) as exit_:
        main(["serve"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[0].startswith("error: mpops serve needs a Prefect server")


def test_serve_with_an_unreachable_prefect_server_exits_2(capsys, monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.cli import main

    monkeypatch.chdir(ROOT)
    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{_closed_port()}/api"}), \
            pytest.raises(SystemExit) as exit_:
        main(["serve"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[0].startswith("error: cannot reach the Prefect server at http://127.0.0.1:")


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket closes


def test_the_monitor_reads_a_batch_path_that_exists_and_serve_refuses_one_that_does_not(tmp_path):
    from flows.deployments import served_deployments
    from pipeline.core.errors import ConfigError

    hourly = next(d for d in SPEC["deployments"] if d["name"] == "hourly-monitor")
    assert (ROOT / hourly["parameters"]["batch"]).is_dir()  # the landing folder ships with the project
    (tmp_path / "prefect.yaml").write_text((ROOT / "prefect.yaml").read_text())  # a project without it
    with pytest.raises(ConfigError) as refused:
        served_deployments(tmp_path)
    assert str(refused.value) == (f"{tmp_path / 'prefect.yaml'}: hourly-monitor's batch 'incoming' does not exist "
                                  f"in {tmp_path}; create it or point the parameter at an existing file or folder")
