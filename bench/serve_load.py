"""HTTP serving latency under load: the fp32 twin against the champion's precision, in one run.

    .venv/bin/python bench/serve_load.py [--precision bf16] [--requests 400] [--seconds 30] [--batch 1]

Trains the default model briefly in fp32 and in --precision, registers both in a throw-away store, and for each
starts `mpops serve-model` on 127.0.0.1 and drives /invocations from a second process, one request after another
over one kept-alive connection, until --requests answers or --seconds pass (after 20 warm-up requests). Prints
p50/p95/p99 latency and requests/s of each, and the ratios champion/fp32 (latency below 1 and requests/s above 1:
the reduced precision won). Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _registered import NAME, register_precisions, throwaway_store  # noqa: E402

MPOPS = str(Path(sys.executable).with_name("mpops"))
DRIVER = r"""
import http.client, json, sys, time
port, n, seconds, body = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4].encode()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
def call():
    conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    assert r.status == 200, r.status
for _ in range(20):
    call()
lat, start = [], time.perf_counter()
while len(lat) < n and time.perf_counter() - start < seconds:
    t = time.perf_counter(); call(); lat.append((time.perf_counter() - t) * 1000)
print(json.dumps({"latency_ms": lat, "wall_s": time.perf_counter() - start}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(version: str, env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([MPOPS, "serve-model", "--model-uri", f"models:/{NAME}/{version}", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve-model exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
            return proc, port
        except OSError:
            time.sleep(0.5)
    raise SystemExit("serve-model did not answer /ping")


def figures(lat: list[float], wall_s: float) -> dict[str, float]:
    import numpy as np

    return {"p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)), "requests_per_s": len(lat) / wall_s, "requests": len(lat)}


def drive(version: str, env: dict, body: str, args) -> dict[str, float]:
    proc, port = serve(version, env)
    try:
        done = subprocess.run([sys.executable, "-c", DRIVER, str(port), str(args.requests), str(args.seconds), body],
                              capture_output=True, text=True, timeout=args.seconds + 120, check=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    raw = json.loads(done.stdout)
    return figures(raw["latency_ms"], raw["wall_s"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--precision", default="bf16", help="the champion's precision")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=1, help="rows per request")
    args = parser.parse_args()
    uri, home = throwaway_store()
    versions = register_precisions(["fp32", args.precision], home)
    import pandas as pd

    rows = pd.read_csv(Path(__file__).resolve().parents[1] / "data" / "digits.csv").drop(columns=["label"])
    rows = rows.head(args.batch).astype("float64")
    body = json.dumps({"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}})
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    result = {p: drive(v, env, body, args) for p, v in versions.items()}
    champ, base = result[args.precision], result["fp32"]
    for p, f in result.items():
        print(f"{p:>6}: p50 {f['p50_ms']:.2f} ms  p95 {f['p95_ms']:.2f} ms  p99 {f['p99_ms']:.2f} ms  "
              f"{f['requests_per_s']:.1f} requests/s ({f['requests']} requests, batch {args.batch})")
    ratios = {k: champ[k] / base[k] for k in ("p50_ms", "p95_ms", "p99_ms", "requests_per_s")}
    print(f"{args.precision}/fp32: p50 x{ratios['p50_ms']:.2f}  p95 x{ratios['p95_ms']:.2f}  "
          f"p99 x{ratios['p99_ms']:.2f}  requests/s x{ratios['requests_per_s']:.2f}  -> "
          f"{args.precision if ratios['p50_ms'] < 1 else 'fp32'} serves faster here")
    print(json.dumps({"batch": args.batch, "figures": result, "ratios": ratios}))


if __name__ == "__main__":
    main()
