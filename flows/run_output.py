"""What `mpops run` and `mpops monitor` print, and the JSON report `mpops run --report` writes for CI."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:  # importing the flow would import Prefect before `mpops run` starts its server
    from flows.training import RunOutcome
from pipeline.core import strict_json
from pipeline.core.config import Config
from pipeline.core.errors import MpopsError
from pipeline.core.hardware import detect, hardware_line, precision_path
from pipeline.render.terminal import (ci_summary, drift_figures, drifted_table, summary_table, what_it_bought,
                                     what_it_could_miss)
from pipeline.tracking.runs import run_url


def _hardware(outcome: RunOutcome):
    return detect(outcome.results[0].device)


def _why(outcome: RunOutcome) -> str:
    """The CPU flags (or GPU and compute capability) behind the precision decision."""
    tried = tuple(r.precision for r in outcome.results) + tuple(r.precision for r in outcome.probes if r.dropped)
    return hardware_line(_hardware(outcome), tuple(dict.fromkeys(tried)))


def _summary(outcome: RunOutcome) -> str:
    reg = outcome.registration
    return ci_summary(outcome.results, outcome.gate, outcome.probes, reg.model_name, reg.version, reg.aliases,
                      reg.champion_reason, _why(outcome))


def write_run_report(path: Path, outcome: RunOutcome | None = None, error: MpopsError | None = None,
                     unchanged: str = "") -> None:
    """The gate report as JSON, pass or fail: CI keeps the report of a failed gate too."""
    unchanged = unchanged or (outcome.unchanged if outcome is not None else "")
    if unchanged:
        body = {"passed": True, "exit_code": 0, "unchanged": unchanged, "gate": None, "registered": None}
    elif error is not None:
        gate = getattr(error, "gate_report", None)
        body = {"passed": False, "exit_code": error.exit_code, "error": str(error),
                "gate": json.loads(gate.to_json()) if gate else None}
    else:
        reg = outcome.registration
        body = {"passed": True, "exit_code": 0, "summary": _summary(outcome), "gate": json.loads(outcome.gate.to_json()),
                "registered": {"model": reg.model_name, "version": reg.version, "aliases": list(reg.aliases)},
                "seconds": outcome.seconds}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(strict_json.dumps(body, indent=2) + "\n")


def _run_link(run_id: str) -> str:
    """A clickable URL for a tracking server; the run ID for a local store (open it with `mlflow ui`)."""
    url = run_url(run_id)
    return url if url.startswith("http") else run_id


def shown(path_or_uri: str | Path) -> str:
    """A path (or sqlite URI) under the working directory shown relative to it: output a user can paste anywhere."""
    text = str(path_or_uri)
    here = str(Path.cwd())
    for prefix in ("sqlite:///", ""):
        if text.startswith(prefix + here + "/"):
            return prefix + text[len(prefix + here) + 1:]
    return text


def print_run(out: Console, outcome: RunOutcome, cfg: Config, root: Path, uri: str, report: Path | None) -> None:
    say = lambda text: out.print(text, markup=False, highlight=False)  # noqa: E731
    out.print(summary_table(list(outcome.results), list(outcome.evals), outcome.gate))
    hw = _hardware(outcome)
    dropped = [f"{r.precision}: {r.reason} ({precision_path(hw, r.precision)})"
               for r in outcome.probes if r.dropped]
    if dropped:
        say(f"Dropped by the precision probe before full training: {'; '.join(dropped)}")
    say(f"What reduced precision bought on this machine: {what_it_bought(outcome.gate) or 'n/a'}")
    say(f"Gate: {outcome.gate.reason}")
    say(f"Hardware behind the decision: {_why(outcome)}")
    missed = what_it_could_miss(outcome.gate)
    if missed:
        say(f"What the gate could have missed: {missed}")
    reg = outcome.registration
    say(f"Registered {reg.model_name} version {reg.version} with alias(es) {', '.join(reg.aliases)} "
        f"({reg.champion_reason}).")
    if getattr(reg, "serve_check", None) is not None:
        say(f"Servability: {reg.serve_check.reason}.")
    say(f"Tracking store: {shown(uri)}  (look: mlflow ui --backend-store-uri {shown(uri)}); "
        f"parent run {outcome.parent_run_id}")
    say(f"Summary: {_summary(outcome)}")
    written = [f"validation report {shown(root / cfg.validation.report_dir)}",
               f"parent run {_run_link(outcome.parent_run_id)} (gate/report.md, gate/report.json, tradeoff.md, "
               "plots/*.png, validation/)",
               f"model models:/{reg.model_name}/{reg.version} (model_card.md, monitoring/ reference and fp32 twin)"]
    if report:
        written.append(f"gate report {report}")
    say("Written: " + "; ".join(written))


def print_monitor(out: Console, batch: str, outcome, experiment: str) -> None:
    say = lambda text: out.print(text, markup=False, highlight=False)  # noqa: E731
    report = outcome.report
    version = f" version {outcome.model_version}" if outcome.model_version else ""
    say(f"Monitored {batch}: {report.rows} rows against {outcome.model_uri}{version} ({report.precision})")
    if report.drifted_features:
        out.print(drifted_table(report))
    say(drift_figures(report))
    say(f"Report: {outcome.report_dir}; MLflow run {outcome.run_id} (experiment {experiment})")
    kept = getattr(outcome, "kept", None)
    if kept:
        use = ("labelled: `--retrain` trains on it with the pinned data" if kept.labelled
               else "without labels on every row: kept, but not trained on")
        say(f"Kept: {kept.path} (DVC md5 {kept.md5}, pointer {kept.pointer.name}); {use}")
    if outcome.retrain:
        say(f"Retrain: {outcome.retrain}")
    checks = ", ".join(r.split(":")[0] for r in report.reasons)
    say(f"Verdict: drift ({checks})" if report.drifted else f"Verdict: {report.verdict}")
