"""Run alone, as a script, by pipeline.tracking.serve_probe: load a registered version the way any MLflow user
would and report load time, predictions and latencies as JSON. It imports nothing of the project: the version
must bring its own code.

    python serve_probe_script.py MODEL_URI ROWS.parquet OUT.json REPEATS
    python serve_probe_script.py --stdin     (imports first, then reads those four as one JSON list on stdin)
"""
import json
import sys
import time


def _without_project_source() -> None:
    """An editable install of the project puts its source on every interpreter's path (a meta-path finder or a
    path entry); a user's client has neither, so neither may serve the version's `pipeline` package here."""
    sys.meta_path[:] = [f for f in sys.meta_path if not str(getattr(f, "__module__", "")).startswith("__editable__")]
    sys.path[:] = [p for p in sys.path if p and not _holds_project(p)]


def _holds_project(entry: str) -> bool:
    import os

    return os.path.exists(os.path.join(entry, "pipeline", "tracking", "serve_probe_script.py"))


def _timed(model, frame, repeats: int) -> list:
    model.predict(frame)  # warm-up: the first call pays for lazy initialisation
    calls = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(frame)
        calls.append((time.perf_counter() - start) * 1000.0)
    return calls


def _ahead() -> None:
    """What any client pays before loading a model (MLflow, pandas, torch, the tracking store's connection);
    none of it is the project's. Started early, the probe pays it while the run still logs the model."""
    _without_project_source()
    import mlflow.pyfunc  # noqa: F401
    import pandas  # noqa: F401
    import torch  # noqa: F401

    mlflow.MlflowClient().search_registered_models(max_results=1)


def main(uri: str, rows_path: str, out_path: str, repeats: int) -> None:
    _without_project_source()
    import mlflow.pyfunc
    import pandas as pd

    report = {}
    try:
        start = time.perf_counter()
        model = mlflow.pyfunc.load_model(uri)
        report["load_s"] = time.perf_counter() - start
        rows = pd.read_parquet(rows_path)
        report["example"] = [str(v) for v in model.predict(model.input_example)]
        report["rows"] = [str(v) for v in model.predict(rows)]
        report["latency_ms"] = {str(b): _timed(model, pd.concat([rows] * (b // len(rows) + 1)).head(b), repeats)
                                for b in (1, 64)}
    except Exception as e:  # noqa: BLE001  whatever fails is the verdict, reported in one line
        report["error"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
    with open(out_path, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    if sys.argv[1:] == ["--stdin"]:
        try:
            _ahead()
        except Exception:  # noqa: BLE001  main() meets the same failure and reports it
            pass
        line = sys.stdin.readline()
        if line.strip():  # an empty line or a closed pipe: the run ended without a version to check
            uri, rows_path, out_path, repeats = json.loads(line)
            main(uri, rows_path, out_path, int(repeats))
    else:
        main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
