"""Training throughput of a model factory file (default: examples/digits-images/model.py) in fp32 vs bf16.

    .venv/bin/python bench/image_cnn_speedup.py [--size 32] [--channels 64] [--batch-size 64]
        [--steps 10] [--repeats 3] [--precisions fp32,bf16] [--model examples/digits-images/model.py:build]

At a size where the convolutions dominate a step (the default: the example's 32x32 inputs, 64 and 128
filters), on random images of that shape (throughput does not depend on the pixels). Each step runs in mpops' own
precision policy (pipeline.core.precision: autocast, loss scaling where the mode has it), the
precisions interleaved `repeats` times so machine noise hits all alike; the median is reported.
Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.core.precision import make_policy  # noqa: E402


@dataclass(frozen=True)
class Spec:  # what a factory reads: the flat feature count and the image shape
    n_features: int
    channels: int
    height: int
    width: int


def load_factory(ref: str):
    path, _, name = ref.rpartition(":")
    spec = importlib.util.spec_from_file_location("bench_model", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def samples_per_s(build, spec: Spec, precision: str, batch: int, steps: int, params: dict) -> float:
    torch.manual_seed(0)
    policy = make_policy(precision, "cpu")
    model = policy.convert_module(build(spec, 10, params))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = policy.convert_input(torch.rand(batch, spec.n_features))
    y = torch.randint(0, 10, (batch,))
    for i in range(steps + 3):  # 3 warm-up steps
        if i == 3:
            start = time.perf_counter()
        with policy.forward_context():
            loss = torch.nn.functional.cross_entropy(policy.convert_output(model(x)), y)
        opt.zero_grad(set_to_none=True)
        policy.optimizer_step(loss, opt)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="examples/digits-images/model.py:build")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args()
    build, s = load_factory(args.model), args.size
    spec = Spec(s * s, 1, s, s)
    precisions = args.precisions.split(",")
    runs: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(args.repeats):
        for p in precisions:
            runs[p].append(samples_per_s(build, spec, p, args.batch_size, args.steps, {"channels": args.channels}))
    figures = {p: statistics.median(v) for p, v in runs.items()}
    for p in precisions:
        print(f"{p:6s} {figures[p]:9,.1f} samples/s  {figures[p] / figures[precisions[0]]:5.2f}x {precisions[0]}")
    print(json.dumps({"bench": "image_cnn_speedup", "model": args.model, "input": [1, s, s],
                      "channels": args.channels, "batch_size": args.batch_size, "steps": args.steps,
                      "repeats": args.repeats, "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "samples_per_s": {p: round(v, 2) for p, v in figures.items()},
                      "ratio_vs_first": {p: round(v / figures[precisions[0]], 4) for p, v in figures.items()}}))


if __name__ == "__main__":
    main()
