"""The end-of-run summary: a table for people, one paragraph for logs."""
from __future__ import annotations

from rich.table import Table

from pipeline.evaluate import EvalResult
from pipeline.gate import GateReport
from pipeline.train import TrainResult


def summary_table(results: list[TrainResult], evals: list[EvalResult], report: GateReport) -> Table:
    table = Table(title="mpops: each precision against the fp32 baseline")
    for col in ("precision", "accuracy", "macro-F1", "agree", "ECE", "samples/s", "speedup", "peak MiB", "mem ratio",
                "wall s", "gate"):
        table.add_column(col, justify="left" if col in ("precision", "gate") else "right", no_wrap=True)
    for r, e in zip(results, evals):
        v = report.verdict(r.precision)
        failed = ", ".join(c.name for c in v.checks if not c.passed)
        verdict = "SELECTED" if r.precision == report.selected else ("pass" if v.passed else f"fail: {failed}")
        agree = f"{v.comparison.agreement:.4f}" if v.comparison else "-"
        table.add_row(r.precision, f"{e.accuracy:.4f}", f"{e.macro_f1:.4f}", agree, f"{e.ece:.4f}",
                      f"{r.samples_per_s:,.0f}",
                      f"{v.speedup:.2f}x", f"{r.peak_memory_bytes / 2**20:.1f}", f"{v.memory_ratio:.2f}x",
                      f"{r.wall_s:.1f}", verdict)
    return table


def what_it_bought(report: GateReport) -> str:
    """Says plainly what each reduced precision gave on this machine, including a slowdown."""
    lines = []
    for v in report.verdicts:
        if v.precision == report.baseline:
            continue
        speed = (f"{v.speedup:.2f}x faster" if v.speedup >= 1.0 else f"{1 / v.speedup:.1f}x SLOWER") + " than fp32"
        memory = f"{v.memory_ratio:.2f}x the peak memory"
        lines.append(f"{v.precision}: {speed}, {memory}, accuracy {v.accuracy_delta:+.4f}")
    return "; ".join(lines)
