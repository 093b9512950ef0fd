"""GFLOP/s of square matmuls in fp32, bf16 and fp16 at 512..4096: the "limit" model FLOP utilisation is read against.

    .venv/bin/python bench/matmul_peak.py [--sizes 512,1024,2048,4096] [--seconds 1.0] [--device auto]

Each size and dtype runs for about `seconds` after a warm-up; the peak of a dtype is its best size.
Ends with one JSON line: GFLOP/s per dtype and size, the peaks, and each peak as a ratio of fp32's.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from pipeline.core.device import resolve_device

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def gflops(n: int, dtype: torch.dtype, device: torch.device, seconds: float) -> float:
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b
    sync()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
        if device.type == "cuda" and reps % 10:
            continue
        sync()  # on CUDA the clock is read after the queued kernels finished
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="512,1024,2048,4096")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    sizes = [int(s) for s in args.sizes.split(",")]
    table = {name: {} for name in DTYPES}
    for n in sizes:
        for name, dtype in DTYPES.items():
            # Slow dtypes (no hardware path) at 4096 would take minutes a rep: cut the size when a smaller one crawled.
            if n > 1024 and table[name].get(1024, 1e9) < 20:
                continue
            table[name][n] = round(gflops(n, dtype, device, args.seconds), 1)
            print(f"{name} {n:5d}: {table[name][n]:10,.1f} GFLOP/s")
    peaks = {name: max(v.values()) for name, v in table.items()}
    print(json.dumps({"bench": "matmul_peak", "device": str(device), "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "gflops": table, "peak_gflops": peaks,
                      "peak_ratio_vs_fp32": {k: round(v / peaks["fp32"], 3) for k, v in peaks.items()}}))


if __name__ == "__main__":
    main()
