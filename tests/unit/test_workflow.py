"""The CI retraining workflow: its triggers and steps, read as GitHub would."""
import yaml

from tests.conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "retrain.yml"


def test_retrain_workflow_triggers_and_steps():
    wf = yaml.safe_load(WORKFLOW.read_text())
    triggers = wf[True]  # YAML 1.1 reads the key `on` as the boolean true
    assert set(triggers["push"]["paths"]) == {"data.dvc", "expectations/**"}
    assert triggers["schedule"][0]["cron"] and "workflow_dispatch" in triggers
    steps = wf["jobs"]["retrain"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert "make setup" in runs
    # restore-data falls back to rebuilding and checking the md5 where a fresh runner has no DVC remote
    assert not any("dvc pull" in r for r in runs)
    assert runs.index(".venv/bin/mpops restore-data") < runs.index(
        ".venv/bin/mpops run --require-pinned --report out/gate-report.json")
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and "out/gate-report.json" in upload["with"]["path"]


def test_secrets_reach_steps_only_as_environment():
    text = WORKFLOW.read_text()
    for line in text.splitlines():
        if "secrets." in line and "run:" in line:
            raise AssertionError(f"a secret is interpolated into a shell command: {line.strip()}")
    assert "echo" not in text
