"""The precision sweep's trade-off table and Pareto plot; the noise floor's spread and suggested tolerances."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.config import GateConfig
from pipeline.evaluate import EvalResult
from pipeline.gate import GateReport, compare, quality_checks
from pipeline.train import TrainResult


@dataclass(frozen=True)
class SweepPoint:
    precision: str
    batch_size: int
    accuracy: float
    macro_f1: float
    ece: float
    samples_per_s: float
    peak_memory_mb: float
    speedup: float  # vs fp32 at the same batch size
    gate_passed: bool
    gate_reason: str
    pareto: bool = False  # no other point is at least as accurate and as fast, and better in one


def sweep_points(batch_size: int, results: list[TrainResult], evals: list[EvalResult],
                 report: GateReport) -> list[SweepPoint]:
    out = []
    for r, e in zip(results, evals):
        v = report.verdict(r.precision)
        out.append(SweepPoint(r.precision, batch_size, e.accuracy, e.macro_f1, e.ece, r.samples_per_s,
                              r.peak_memory_bytes / 2**20, v.speedup, v.passed, v.reason))
    return out


def mark_pareto(points: list[SweepPoint]) -> list[SweepPoint]:
    """Pareto-optimal on (accuracy, throughput), both higher-is-better."""
    def dominated(p: SweepPoint) -> bool:
        return any(q.accuracy >= p.accuracy and q.samples_per_s >= p.samples_per_s
                   and (q.accuracy > p.accuracy or q.samples_per_s > p.samples_per_s) for q in points)
    return [replace(p, pareto=not dominated(p)) for p in points]


def tradeoff_markdown(points: list[SweepPoint], picks: dict[int, str | None],
                      title: str = "Precision sweep: accuracy against throughput") -> str:
    rows = ["| precision | batch | accuracy | macro-F1 | ECE | samples/s | speedup | peak MiB | Pareto | gate |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for p in sorted(points, key=lambda p: (p.batch_size, -p.samples_per_s)):
        gate = "pass" if p.gate_passed else f"fail: {p.gate_reason[:120]}"
        rows.append(f"| {p.precision} | {p.batch_size} | {p.accuracy:.4f} | {p.macro_f1:.4f} | {p.ece:.4f} | "
                    f"{p.samples_per_s:,.0f} | {p.speedup:.2f}x | {p.peak_memory_mb:.1f} | "
                    f"{'yes' if p.pareto else ''} | {gate} |")
    picked = "; ".join(f"batch {b}: {p or 'nothing passed'}" for b, p in picks.items())
    return f"# {title}\n\n" + "\n".join(rows) + f"\n\nThe gate picks: {picked}.\n"


def pareto_plot(points: list[SweepPoint], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    mem = np.array([p.peak_memory_mb for p in points])
    sizes = 60 + 600 * (mem / mem.max() if mem.max() > 0 else mem)  # marker area ~ peak memory
    for p, s in zip(points, sizes):
        ax.scatter(p.samples_per_s, p.accuracy, s=s, alpha=0.6, edgecolors="black" if p.pareto else "none",
                   marker="o" if p.gate_passed else "X")
        ax.annotate(f"{p.precision} b{p.batch_size}", (p.samples_per_s, p.accuracy), fontsize=8,
                    xytext=(5, 5), textcoords="offset points")
    front = sorted((p for p in points if p.pareto), key=lambda p: p.samples_per_s)
    ax.plot([p.samples_per_s for p in front], [p.accuracy for p in front], "k--", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("training samples/s (log)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Precision sweep (marker size: peak memory; X: failed the gate)")
    ax.legend(loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass(frozen=True)
class NoiseRow:
    """One gated quantity across fp32 seeds, measured the way the gate measures it (vs seed 0)."""

    name: str
    config_key: str
    configured: float
    worst: float  # the largest "loss" seen between two fp32 runs that differ only in seed
    spread: float  # standard deviation across the non-reference seeds
    op: str  # "<=" (a loss bound) or ">=" (a floor, e.g. agreement)

    @property
    def suggested(self) -> float:
        """The worst seed-to-seed figure, rounded outward: a tolerance below it fails fp32 itself."""
        if not math.isfinite(self.worst):
            return float("nan")
        return math.ceil(self.worst * 1000) / 1000 if self.op == "<=" else math.floor(self.worst * 1000) / 1000

    @property
    def tighter_than_noise(self) -> bool:
        return self.configured < self.worst if self.op == "<=" else self.configured > self.worst


def noise_rows(ref: EvalResult, others: list[EvalResult], y: np.ndarray, cfg: GateConfig,
               classes: tuple[str, ...]) -> list[NoiseRow]:
    figures: dict[str, list[float]] = {}
    for e in others:
        cmp = compare(ref, e, y, cfg)
        checks = {c.name: c.value for c in quality_checks(ref, e, cmp, cfg, classes)}
        for name, value in (
            ("accuracy loss (CI lower bound)", checks["accuracy (CI lower bound) loss vs reference"]),
            ("macro-F1 loss", checks["macro-F1 loss vs reference"]),
            ("macro precision loss", checks["macro precision loss vs reference"]),
            ("macro recall loss", checks["macro recall loss vs reference"]),
            ("largest per-class recall drop", checks["largest per-class recall drop"]),
            ("agreement", cmp.agreement),
            ("ECE increase", e.ece - ref.ece),
            ("Brier increase", e.brier - ref.brier),
            ("FGSM accuracy drop", ref.fgsm_accuracy - e.fgsm_accuracy),
        ):
            figures.setdefault(name, []).append(value)
    keys = {"accuracy loss (CI lower bound)": "accuracy_tolerance", "macro-F1 loss": "macro_f1_tolerance",
            "macro precision loss": "precision_tolerance", "macro recall loss": "recall_tolerance",
            "largest per-class recall drop": "max_class_recall_drop", "agreement": "min_agreement",
            "ECE increase": "max_ece_increase", "Brier increase": "max_brier_increase",
            "FGSM accuracy drop": "max_fgsm_drop"}
    rows = []
    for name, values in figures.items():
        op = ">=" if name == "agreement" else "<="
        arr = np.array(values, dtype=float)
        worst = float(np.nanmin(arr) if op == ">=" else np.nanmax(arr)) if np.isfinite(arr).any() else float("nan")
        rows.append(NoiseRow(name, f"gate.{keys[name]}", getattr(cfg, keys[name]), worst,
                             float(np.nanstd(arr)) if len(arr) > 1 else 0.0, op))
    return rows


def noise_markdown(rows: list[NoiseRow], seeds: list[int], accuracies: list[float]) -> str:
    acc = np.array(accuracies)
    lines = [f"# Noise floor: fp32 trained with seeds {', '.join(map(str, seeds))}", "",
             f"Test accuracy per seed: {', '.join(f'{a:.4f}' for a in acc)} (mean {acc.mean():.4f}, "
             f"std {acc.std():.4f}, range {acc.max() - acc.min():.4f}).", "",
             f"Each figure compares seeds {', '.join(map(str, seeds[1:]))} with seed {seeds[0]}, exactly as the "
             "gate compares a candidate with fp32.", "",
             "| gated figure | config key | configured | worst seen | std | suggested | tighter than the noise? |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.config_key} | {r.op} {r.configured:.4g} | {r.worst:.4g} | {r.spread:.4g} | "
                     f"{r.op} {r.suggested:.4g} | {'**yes**: fp32 itself can fail it' if r.tighter_than_noise else 'no'} |")
    return "\n".join(lines) + "\n"
