"""Peak memory of `mpops predict`'s chunked scoring on a large file, against the file's size in memory.

    .venv/bin/python bench/predict_memory.py [--rows 1000000] [--chunk-rows 50000] [--hidden-size 256]

Writes a Parquet file of --rows rows of the 64 digit features (in row groups, so writing it stays small too),
registers a briefly trained model in a throw-away store, and scores the file in a fresh process with
pipeline.core.chunks.score_file (what the predict flow runs). That process reports the traced Python peak
(tracemalloc: numpy and pandas buffers) and its peak RSS above what it held once the model was loaded.
Prints both and their ratio to the whole file as a float64 frame. Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _registered import NAME, ROOT, register_precisions, throwaway_store  # noqa: E402

SCORE = r"""
import json, resource, sys, tracemalloc
import mlflow.pyfunc
from pipeline.core.chunks import Reservoir, numeric_features, score_file
model = mlflow.pyfunc.load_model(sys.argv[1])
features = model.metadata.get_input_schema().input_names()
base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
n = score_file(model.predict, numeric_features(features), sys.argv[2], sys.argv[3], int(sys.argv[4]), "label",
               {"model_name": "m", "model_version": "1", "precision": "fp32"}, Reservoir(20000))
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({"rows": n, "traced_peak": peak, "rss_above_loaded": (resource.getrusage(
    resource.RUSAGE_SELF).ru_maxrss - base_kb) * 1024, "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def write_rows(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng, names, writer, done = np.random.default_rng(0), [f"pixel_{i}" for i in range(64)], None, 0
    while done < rows:
        n = min(100_000, rows - done)
        table = pa.table({c: rng.integers(0, 17, n).astype("float64") for c in names})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=50_000)
        done += n
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--hidden-size", type=int, default=256)
    args = parser.parse_args()
    _, home = throwaway_store()
    version = register_precisions(["fp32"], home, hidden_size=args.hidden_size)["fp32"]
    src, out = home / "big.parquet", home / "predictions.parquet"
    write_rows(src, args.rows)
    done = subprocess.run([sys.executable, "-c", SCORE, f"models:/{NAME}/{version}", str(src), str(out),
                           str(args.chunk_rows)], capture_output=True, text=True, cwd=ROOT, check=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    whole = args.rows * 64 * 8
    mib = 2 ** 20
    print(f"{got['rows']} rows, {src.stat().st_size / mib:.0f} MiB on disk, {whole / mib:.0f} MiB as a float64 "
          f"frame; chunks of {args.chunk_rows} rows")
    print(f"traced peak (numpy/pandas buffers): {got['traced_peak'] / mib:.1f} MiB = "
          f"{got['traced_peak'] / whole:.3f} x the whole frame")
    print(f"peak RSS above the loaded model: {got['rss_above_loaded'] / mib:.1f} MiB = "
          f"{got['rss_above_loaded'] / whole:.3f} x the whole frame (process peak RSS {got['rss_peak'] / mib:.0f} MiB)")
    print(json.dumps({**got, "whole_frame_bytes": whole, "chunk_rows": args.chunk_rows}))


if __name__ == "__main__":
    main()
