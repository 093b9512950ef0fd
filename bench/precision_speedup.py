"""Training throughput, peak memory and model FLOP utilisation of each precision and zoo model, vs fp32.

    .venv/bin/python bench/precision_speedup.py [--models mlp,cnn,transformer] [--epochs 3] [--repeats 3]
        [--precisions fp32,bf16,fp16] [--hidden-size N] [--batch-size N]

Uses the default config (model size, batch) unless overridden. Each precision runs `repeats` times
interleaved (fp32, bf16, fp16, fp32, ...) so machine noise hits all alike; the median is reported.
Model FLOP utilisation = 3 x forward FLOPs/sample x samples/s over the matmul peak of the same
precision, measured in this run (bench/matmul_peak.py's method, best of n=256, 512, 1024). Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matmul_peak import DTYPES, gflops  # noqa: E402

from pipeline.core.config import Config  # noqa: E402
from pipeline.core.data import load_dataset, split_dataset  # noqa: E402
from pipeline.core.device import resolve_device  # noqa: E402
from pipeline.core.train import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="mlp")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    parser.add_argument("--hidden-size", type=int)
    parser.add_argument("--batch-size", type=int)
    args = parser.parse_args()
    cfg = Config()
    base_cfg = replace(cfg.train, epochs=args.epochs, checkpoint_every=0, hidden_size=args.hidden_size or cfg.train.hidden_size,
                       batch_size=args.batch_size or cfg.train.batch_size)
    split = split_dataset(load_dataset(Path(cfg.data.path)), cfg.data.test_size, cfg.data.split_seed)
    device = resolve_device(base_cfg.device)
    precisions = args.precisions.split(",")
    # the best of three sizes: a dtype without a hardware path can be faster at small sizes than at 1024
    peak = {p: max(gflops(n, DTYPES.get(p, torch.float32), device, 0.3) for n in (256, 512, 1024))
            for p in precisions}
    out = {}
    for model in args.models.split(","):
        train_cfg = replace(base_cfg, model=model)
        runs: dict[str, list] = {p: [] for p in precisions}
        for _ in range(args.repeats):
            for p in precisions:
                runs[p].append(train(split, train_cfg, p, device=device))
        flops = runs["fp32"][0].spec.flops_per_sample
        figures = {}
        for p in precisions:
            sps = statistics.median(r.samples_per_s for r in runs[p])
            figures[p] = {"samples_per_s": sps,
                          "peak_memory_mb": statistics.median(r.peak_memory_bytes for r in runs[p]) / 2**20,
                          "model_gflops": 3 * flops * sps / 1e9, "matmul_peak_gflops": peak[p]}
            figures[p]["mfu"] = figures[p]["model_gflops"] / peak[p]
        base = figures["fp32"]
        for p in precisions:
            f = figures[p]
            f["speedup_vs_fp32"] = f["samples_per_s"] / base["samples_per_s"]
            f["memory_ratio_vs_fp32"] = f["peak_memory_mb"] / base["peak_memory_mb"]
            print(f"{model:11s} {p:9s} {f['samples_per_s']:10,.0f} samples/s  {f['speedup_vs_fp32']:5.2f}x fp32   "
                  f"peak {f['peak_memory_mb']:6.1f} MiB  {f['memory_ratio_vs_fp32']:4.2f}x   MFU {f['mfu']:6.1%}")
        out[model] = {"flops_per_sample": flops, "figures": {p: {k: round(v, 4) for k, v in f.items()}
                                                             for p, f in figures.items()}}
    print(json.dumps({"bench": "precision_speedup", "device": str(device), "torch": torch.__version__,
                      "hidden_size": base_cfg.hidden_size, "hidden_layers": base_cfg.hidden_layers,
                      "batch_size": base_cfg.batch_size, "epochs": args.epochs, "repeats": args.repeats,
                      "threads": torch.get_num_threads(), "models": out}))


if __name__ == "__main__":
    main()
