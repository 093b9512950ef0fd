"""PNG plots for a reviewer in the MLflow UI: the run's, and the sweep's Pareto plot. Matplotlib's Agg backend."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.evaluate import EvalResult
from pipeline.core.gate import GateReport
from pipeline.core.metrics import reliability_curve
from pipeline.core.sweep import SweepPoint
from pipeline.core.train import TrainResult


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # servers and CI have no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot().close(fig)
    return path


def loss_per_precision(results: list[TrainResult], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        ax.plot(range(1, len(r.epoch_losses) + 1), r.epoch_losses, marker="o", ms=3, label=r.precision)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss")
    ax.set_yscale("log")
    ax.set_title("Training loss per precision (same seed and batch order)")
    ax.legend()
    return _save(fig, path)


def loss_scale(result: TrainResult, path: Path) -> Path:
    """fp16's dynamic loss scale per step, with the steps the scaler skipped (non-finite gradients)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    scales = np.array(result.loss_scales, dtype=float)
    ax.plot(np.arange(len(scales)), scales, lw=1, label="loss scale")
    skipped = np.flatnonzero(~np.isfinite(np.array(result.grad_norms, dtype=float)))
    if len(skipped):
        ax.scatter(skipped, scales[skipped], color="red", marker="x", zorder=3,
                   label=f"skipped steps ({len(skipped)} of {len(scales)})")
    ax.set_yscale("log", base=2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss scale")
    ax.set_title(f"{result.precision}: dynamic loss scale and skipped steps")
    ax.legend()
    return _save(fig, path)


def confusion(ev: EvalResult, y: np.ndarray, classes: tuple, path: Path) -> Path:
    from sklearn.metrics import confusion_matrix

    plt = pyplot()
    m = confusion_matrix(y, ev.predictions, labels=list(range(len(classes))))
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(m, cmap="Blues")
    for (i, j), n in np.ndenumerate(m):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                    color="white" if n > m.max() / 2 else "black")
    ticks = range(len(classes))
    ax.set_xticks(ticks, [str(c) for c in classes])
    ax.set_yticks(ticks, [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix: {ev.precision} (accuracy {ev.accuracy:.4f})")
    return _save(fig, path)


def per_class_recall(base: EvalResult, chosen: EvalResult, classes: tuple, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(classes))
    ax.bar(x - 0.2, base.per_class_recall, 0.4, label=base.precision)
    ax.bar(x + 0.2, chosen.per_class_recall, 0.4, label=chosen.precision)
    ax.set_xticks(x, [str(c) for c in classes])
    ax.set_ylim(max(0.0, min(base.per_class_recall + chosen.per_class_recall) - 0.1), 1.0)
    ax.set_xlabel("class")
    ax.set_ylabel("recall on the test split")
    ax.set_title(f"Per-class recall: {base.precision} vs {chosen.precision}")
    ax.legend(loc="lower right")
    return _save(fig, path)


def reliability(evals: list[EvalResult], y: np.ndarray, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfectly calibrated")
    for e in evals:
        if e.probabilities is None or not np.isfinite(e.probabilities).all():
            continue  # non-finite outputs: the gate already failed it for them
        conf, acc, count = reliability_curve(y, e.probabilities)
        keep = count > 0
        ax.plot(conf[keep], acc[keep], marker="o", ms=3, label=f"{e.precision} (ECE {e.ece:.3f})")
    ax.set_xlabel("mean confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram (test split)")
    ax.legend(loc="upper left")
    return _save(fig, path)


def run_plots(folder: Path, results: list[TrainResult], evals: list[EvalResult], report: GateReport,
              y: np.ndarray, classes: tuple) -> list[Path]:
    """The parent run's plots; `report.selected` None (nothing passed): the best-accuracy candidate stands in."""
    folder.mkdir(parents=True, exist_ok=True)
    by_name = {e.precision: e for e in evals}
    base = by_name[report.baseline]
    chosen = by_name.get(report.selected) or max(evals, key=lambda e: e.accuracy)
    paths = [loss_per_precision(results, folder / "loss_per_precision.png"),
             confusion(chosen, y, classes, folder / "confusion_matrix.png"),
             per_class_recall(base, chosen, classes, folder / "per_class_recall.png"),
             reliability([base] + ([chosen] if chosen is not base else []), y, folder / "reliability.png")]
    paths += [loss_scale(r, folder / f"loss_scale_{r.precision}.png") for r in results if r.policy.loss_scaling]
    return paths


def pareto_plot(points: list[SweepPoint], path: Path) -> Path:
    plt = pyplot()
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
