"""The pipeline's own cost: per-stage seconds of a default `mpops run` and of `mpops monitor`, and the fixed
overhead (wall time minus training and evaluation) as a share of wall time.

    .venv/bin/python bench/overhead.py [--server] [--set key=value]...

Each command runs as a user runs it (a subprocess in the project folder) against a temporary MLflow store,
so the project's mlruns/ is left alone. `mpops run` reports its stages as `time.*_s` metrics on its parent
run; they are read back from the store. Then the same `mpops run` again: nothing changed, so it should
stop after the run-key check. `mpops monitor` scores the test split of the bundled data against the new
champion, once with its own temporary Prefect server and once with a configured one; its stages are the
interpreter and imports (a fresh `import flows.cli, flows.monitoring`), the server start (the difference of
the two) and the rest. `--server`: a Prefect server is running and configured
(PREFECT_API_URL), as on a scheduled deployment, so no command starts one. Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MPOPS = str(Path(sys.executable).with_name("mpops"))


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    r = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    return time.perf_counter() - start, r


def stage_metrics(uri: str) -> dict[str, float]:
    from mlflow import MlflowClient

    client = MlflowClient(uri, uri)
    exp = client.get_experiment_by_name("mpops")
    run = client.search_runs([exp.experiment_id], "tags.mlflow.runName = 'pipeline'", order_by=["start_time DESC"],
                             max_results=1)[0]
    return {k[len("time."):-2]: v for k, v in run.data.metrics.items() if k.startswith("time.") and k.endswith("_s")}


def import_seconds(env: dict[str, str]) -> float:
    wall, r = timed([sys.executable, "-c", "import flows.cli, flows.cli_model, flows.monitoring"], env)
    assert r.returncode == 0, r.stderr
    return wall


def run_figures(env: dict[str, str], sets: list[str]) -> dict:
    wall, r = timed([MPOPS, "run", "--quiet", *sets], env)
    if r.returncode:
        sys.exit(f"mpops run failed ({r.returncode}):\n{r.stderr[-3000:]}")
    stages = stage_metrics(env["MLFLOW_TRACKING_URI"])
    productive = sum(v for k, v in stages.items() if k.startswith(("train.", "evaluate.")))
    again, r2 = timed([MPOPS, "run", "--quiet", *sets], env)
    return {"wall_s": round(wall, 2), "stages_s": {k: round(v, 2) for k, v in stages.items() if k not in
                                                  ("wall", "overhead")},
            "training_and_evaluation_s": round(productive, 2), "overhead_s": round(wall - productive, 2),
            "overhead_share": round((wall - productive) / wall, 3), "unchanged_rerun_s": round(again, 2),
            "unchanged_line": r2.stdout.strip().splitlines()[-1] if r2.stdout.strip() else r2.stderr[-300:]}


def monitor_figures(env: dict[str, str], tmp: Path, url: str) -> dict:
    """`mpops monitor` twice, with its own temporary Prefect server and with the configured one: the difference
    is its orchestration start-up; the imports are timed in a fresh interpreter."""
    import pandas as pd

    from pipeline.core.config import Config
    from pipeline.core.data import assign_split

    frame = pd.read_csv(ROOT / Config().data.path / "digits.csv")
    batch = tmp / "batch.csv"
    frame[(assign_split(frame, "label", 0.2, 0) == "test").to_numpy()].drop(columns=["label"]).to_csv(batch,
                                                                                                        index=False)
    argv = [MPOPS, "monitor", "--batch", str(batch), "--set", f"monitor.report_dir={tmp / 'monitoring'}"]
    walls = {}
    for mode, extra in (("temporary", {}), ("configured", {"PREFECT_API_URL": url})):
        walls[mode], r = timed(argv, {**{k: v for k, v in env.items() if k != "PREFECT_API_URL"}, **extra})
        if r.returncode not in (0, 5):
            sys.exit(f"mpops monitor failed ({r.returncode}):\n{r.stderr[-3000:]}")
    wall = walls["temporary" if "PREFECT_API_URL" not in env else "configured"]
    imports = import_seconds(env)
    start_up = walls["temporary"] - walls["configured"] if "PREFECT_API_URL" not in env else 0.0
    return {"wall_s": round(wall, 2), "wall_with_configured_server_s": round(walls["configured"], 2),
            "stages_s": {"imports": round(imports, 2), "orchestration start-up": round(start_up, 2),
                         "monitoring": round(wall - imports - start_up, 2)},
            "overhead_share": round((imports + start_up) / wall, 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", action="store_true", help="a configured Prefect server, as on a deployment")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="passed to mpops run")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from flows.processes import start_server, stop_server
    from pipeline.core.project import disable_telemetry

    disable_telemetry()  # as every mpops command does; the server and the commands inherit it

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "NO_COLOR": "1",
               "PREFECT_HOME": str(tmp / "prefect")}
        started = time.perf_counter()
        server, url = start_server({"PREFECT_HOME": str(tmp / "prefect")}, timeout=180)
        server_s = time.perf_counter() - started  # what each command pays without a configured server
        try:
            if args.server:
                env["PREFECT_API_URL"] = url
            else:
                env.pop("PREFECT_API_URL", None)
            sets = [a for s in [f"validation.report_dir={tmp / 'validation'}", f"train.checkpoint_dir={tmp / 'ckpt'}",
                                *args.sets] for a in ("--set", s)]
            run = run_figures(env, sets)
            monitor = monitor_figures(env, tmp, url)
        finally:
            stop_server(server)
    for name, fig in (("mpops run", run), ("mpops monitor", monitor)):
        print(f"{name}: wall {fig['wall_s']:.1f} s, fixed overhead {fig['overhead_share']:.0%} of it")
        for stage, s in fig["stages_s"].items():
            print(f"  {stage:28s} {s:7.2f} s")
    print(f"mpops run again on the same data, code and config: {run['unchanged_rerun_s']:.1f} s "
          f"({run['unchanged_line']})")
    print(json.dumps({"bench": "overhead", "prefect_server": "configured" if args.server else "temporary",
                      "server_start_s": round(server_s, 2), "run": run, "monitor": monitor}))


if __name__ == "__main__":
    main()
