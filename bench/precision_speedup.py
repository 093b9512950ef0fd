"""Training throughput and peak memory of each precision on the default model, vs fp32 in the same run.

    .venv/bin/python bench/precision_speedup.py [--epochs 5] [--repeats 3]

Prints one line per precision and ends with one JSON line of figures and ratios. Each precision
runs `repeats` times interleaved (fp32, bf16, fp16, fp32, ...) so machine noise hits all alike;
the median is reported.
"""
from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace

import torch

from pipeline.config import Config
from pipeline.data import load_dataset, split_dataset
from pipeline.precision import make_policy, resolve_device
from pipeline.train import train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    args = parser.parse_args()
    cfg = Config()
    train_cfg = replace(cfg.train, epochs=args.epochs)
    split = split_dataset(load_dataset(cfg.data.path), cfg.data.test_size, cfg.data.split_seed)
    device = resolve_device(train_cfg.device)
    precisions = args.precisions.split(",")
    runs: dict[str, list] = {p: [] for p in precisions}
    for _ in range(args.repeats):
        for p in precisions:
            runs[p].append(train(split, train_cfg, make_policy(p, device)))
    figures = {}
    for p in precisions:
        figures[p] = {"samples_per_s": statistics.median(r.samples_per_s for r in runs[p]),
                      "peak_memory_mb": statistics.median(r.peak_memory_bytes for r in runs[p]) / 2**20}
    base = figures["fp32"]
    for p in precisions:
        f = figures[p]
        f["speedup_vs_fp32"] = f["samples_per_s"] / base["samples_per_s"]
        f["memory_ratio_vs_fp32"] = f["peak_memory_mb"] / base["peak_memory_mb"]
        print(f"{p:5s} {f['samples_per_s']:10,.0f} samples/s  {f['speedup_vs_fp32']:5.2f}x fp32   "
              f"peak {f['peak_memory_mb']:6.1f} MiB  {f['memory_ratio_vs_fp32']:4.2f}x fp32")
    print(json.dumps({"bench": "precision_speedup", "device": str(device), "torch": torch.__version__,
                      "model": f"mlp {train_cfg.hidden_layers}x{train_cfg.hidden_size}",
                      "batch_size": train_cfg.batch_size, "epochs": args.epochs, "repeats": args.repeats,
                      "threads": torch.get_num_threads(),
                      "figures": {p: {k: round(v, 3) for k, v in f.items()} for p, f in figures.items()}}))


if __name__ == "__main__":
    main()
