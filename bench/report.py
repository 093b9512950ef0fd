"""Run the benches and write docs/benchmarks.md from their JSON output: no figure typed in by hand.

    .venv/bin/python bench/report.py [--only NAME,...] [--from-json out/bench] [--output docs/benchmarks.md]

Each bench prints one JSON line last; this script keeps it under out/bench/NAME.json and renders
every figure from those files, beside the machine that measured them (CPU model, the CPU flags that
decide bf16/fp16 speed, torch version). `--from-json` renders kept files without running anything.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# name -> arguments; a bench whose file does not exist is left out (and the page says so).
BENCHES = {
    "matmul_peak": ["--seconds", "0.5", "--sizes", "256,512,1024,2048"],
    # fp16 is left to matmul_peak: on a CPU without AVX-512 FP16 its training runs tens of times slower.
    "precision_speedup": ["--models", "mlp,cnn", "--epochs", "2", "--repeats", "2", "--precisions", "fp32,bf16"],
    "image_cnn_speedup": [],  # examples/digits-images/model.py, fp32 vs bf16, 32x32 inputs
    "train_overhead": ["--models", "mlp", "--repeats", "3", "--no-lightning"],
    "validate_scale": ["--sizes", "100000,1000000"],
    "gate_power": [],
    "drift_calibration": [],
    "overhead": [],
    "serve_load": [],
    "predict_memory": [],
}
PRECISION_FLAGS = ("avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16", "avx512f", "avx2")


def machine() -> dict:
    """The CPU (model and the flags that decide reduced-precision speed), cores and torch version."""
    info = {"python": platform.python_version(), "machine": platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    models = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    info["cpu"] = models[0] if models else platform.processor() or "unknown"
    info["cores"] = len(models) or None
    info["flags"] = {f: f in flags for f in PRECISION_FLAGS}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = "not installed"
    return info


def run_bench(name: str, args: list[str], folder: Path) -> dict | None:
    script = ROOT / "bench" / f"{name}.py"
    if not script.is_file():
        return None
    print(f"bench/report.py: running {name} ...", flush=True)
    done = subprocess.run([sys.executable, str(script), *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: bench/{name}.py exited {done.returncode}:\n{done.stderr[-2000:]}")
    body = json.loads(done.stdout.strip().splitlines()[-1])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(body, indent=2) + "\n")
    return body


def _num(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _flat(prefix: str, value) -> list[tuple[str, object]]:
    if isinstance(value, dict):
        return [row for k, v in value.items() for row in _flat(f"{prefix}.{k}" if prefix else str(k), v)]
    return [(prefix, value)]


def generic(body: dict) -> list[str]:
    rows = [(k, v) for k, v in _flat("", body) if k != "bench"]
    return ["| figure | value |", "|---|---:|", *[f"| {k} | {_num(v)} |" for k, v in rows]]


def render_matmul(body: dict) -> list[str]:
    sizes = sorted({int(n) for table in body["gflops"].values() for n in table})
    lines = ["| dtype | " + " | ".join(f"n={n}" for n in sizes) + " | peak | vs fp32 |",
             "|---|" + "---:|" * (len(sizes) + 2)]
    for dtype, table in body["gflops"].items():
        cells = [_num(table.get(str(n), table.get(n))) if (str(n) in table or n in table) else "-" for n in sizes]
        lines.append(f"| {dtype} | " + " | ".join(cells) + f" | {_num(body['peak_gflops'][dtype])} | "
                     f"{body['peak_ratio_vs_fp32'][dtype]:.2f}x |")
    return ["GFLOP/s of square matmuls (`bench/matmul_peak.py`):", "", *lines]


def render_speedup(body: dict) -> list[str]:
    lines = [f"Training throughput per precision (`bench/precision_speedup.py`, batch {body['batch_size']}, "
             f"{body['epochs']} epochs, median of {body['repeats']}):", "",
             "| model | precision | samples/s | vs fp32 | peak MiB | vs fp32 | MFU |", "|---|---|---:|---:|---:|---:|---:|"]
    for model, m in body["models"].items():
        for p, f in m["figures"].items():
            lines.append(f"| {model} | {p} | {_num(f['samples_per_s'])} | {f['speedup_vs_fp32']:.2f}x | "
                         f"{f['peak_memory_mb']:.1f} | {f['memory_ratio_vs_fp32']:.2f}x | {f['mfu']:.1%} |")
    return lines


def render_overhead(body: dict) -> list[str]:
    lines = [f"mpops' trainer against a bare PyTorch loop (`bench/train_overhead.py`, median of {body['repeats']}):",
             "", "| model/precision | bare samples/s | mpops samples/s | mpops / bare |", "|---|---:|---:|---:|"]
    for key, row in body["figures"].items():
        lines.append(f"| {key} | {_num(row['bare_samples_per_s'])} | {_num(row['mpops_samples_per_s'])} | "
                     f"{row['mpops_vs_bare']:.3f} |")
    return lines


def render_pipeline_cost(body: dict) -> list[str]:
    lines = [f"The pipeline's own seconds (`bench/overhead.py`, Prefect server {body['prefect_server']}):", ""]
    for name in ("run", "monitor"):
        fig = body[name]
        lines += [f"`mpops {name}`: wall {fig['wall_s']:.1f} s, fixed overhead {fig['overhead_share']:.0%} of it", "",
                  "| stage | seconds |", "|---|---:|", *[f"| {k} | {v:.2f} |" for k, v in fig["stages_s"].items()], ""]
    return [*lines, f"`mpops run` again with nothing changed: {body['run']['unchanged_rerun_s']:.1f} s."]


RENDER = {"matmul_peak": render_matmul, "precision_speedup": render_speedup, "train_overhead": render_overhead,
          "overhead": render_pipeline_cost}


def why(info: dict, results: dict) -> list[str]:
    """Why the same pipeline keeps bf16 on one CPU and fp32 on another, with this machine's own ratio."""
    flags = info["flags"]
    has_bf16 = flags.get("avx512_bf16") or flags.get("amx_bf16")
    ratio = results.get("matmul_peak", {}).get("peak_ratio_vs_fp32", {}).get("bf16")
    measured = f" Here the bf16 matmul peak is {ratio:.2f}x fp32's." if ratio else ""
    return [
        "## Why bf16 wins on one CPU and loses on another", "",
        "bf16 is fast only where the CPU multiplies bfloat16 in hardware: AVX-512 BF16 (`avx512_bf16`) or AMX "
        "(`amx_bf16`). Without them PyTorch converts to fp32 in software around every matmul, and bf16 training "
        "runs several times slower than fp32. fp16 on a CPU has a hardware path only with AVX-512 FP16 or AMX-FP16. "
        "So the gate measures speed on the machine that trains, and the probe drops a precision that is "
        f"slower there. This machine {'has' if has_bf16 else 'has no'} bf16 hardware "
        f"({', '.join(f for f in ('avx512_bf16', 'amx_bf16') if flags.get(f)) or 'neither avx512_bf16 nor amx_bf16'})."
        + measured, ""]


def render(info: dict, results: dict, missing: list[str]) -> str:
    flags = ", ".join(f"`{f}` {'yes' if on else 'no'}" for f, on in info["flags"].items())
    lines = ["# Benchmarks", "",
             "What a user does: `make bench` runs every bench in `bench/` and rewrites this page from their JSON "
             "output (kept under `out/bench/`). Every figure below was measured in that one run, on this machine; "
             "each bench compares against a reference measured in the same run, because machines are noisy.", "",
             "## The machine", "",
             f"- CPU: {info['cpu']}, {info['cores']} cores ({info['machine']}); GPU: {info.get('cuda') or 'none'}",
             f"- Flags that decide reduced-precision speed: {flags}",
             f"- torch {info['torch']}, Python {info['python']}; measured {info['date']}", ""]
    lines += why(info, results)
    for name, body in results.items():
        lines += [f"## {name}", "", *RENDER.get(name, generic)(body), ""]
    if missing:
        lines += ["Not run (no such bench in this checkout): " + ", ".join(missing) + ".", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="comma-separated bench names")
    parser.add_argument("--from-json", type=Path, help="render the JSON kept in this folder; run nothing")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHES)
    folder = args.from_json or ROOT / "out" / "bench"
    results, missing = {}, []
    for name in names:
        if args.from_json:
            path = folder / f"{name}.json"
            body = json.loads(path.read_text()) if path.is_file() else None
        else:
            body = run_bench(name, BENCHES.get(name, []), folder)
        if body is None:
            missing.append(name)
        else:
            results[name] = body
    info = {**machine(), "date": datetime.date.today().isoformat()}
    args.output.write_text(render(info, results, missing) + "\n")
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")


if __name__ == "__main__":
    main()
