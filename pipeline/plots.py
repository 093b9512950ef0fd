"""PNG plots for the parent run, for a reviewer in the MLflow UI. Matplotlib's Agg backend: no display."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.evaluate import EvalResult
from pipeline.gate import GateReport
from pipeline.metrics import reliability_curve
from pipeline.train import TrainResult


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # servers and CI have no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def loss_per_precision(results: list[TrainResult], path: Path) -> Path:
    plt = _pyplot()
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
    plt = _pyplot()
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

    plt = _pyplot()
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
    plt = _pyplot()
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
    plt = _pyplot()
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
