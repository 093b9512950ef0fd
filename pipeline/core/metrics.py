"""Paired comparisons of two models on the same test rows: significance, agreement, calibration.

Pure numpy/scipy on predictions and probabilities, so every gate can be tested on constructed arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest


@dataclass(frozen=True)
class PairedTest:
    base_only: int  # rows the baseline gets right and the candidate wrong
    cand_only: int  # rows the candidate gets right and the baseline wrong
    p_value: float  # exact McNemar: two-sided binomial test on the discordant pairs


def mcnemar_exact(y: np.ndarray, base_pred: np.ndarray, cand_pred: np.ndarray) -> PairedTest:
    base_ok, cand_ok = base_pred == y, cand_pred == y
    b, c = int(np.sum(base_ok & ~cand_ok)), int(np.sum(~base_ok & cand_ok))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return PairedTest(b, c, p)


def bootstrap_delta_ci(y: np.ndarray, base_pred: np.ndarray, cand_pred: np.ndarray, n_boot: int = 2000,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of accuracy(candidate) - accuracy(baseline), resampling test rows in pairs.

    Pairing is what makes it fair both ways: rows both models get equally right or wrong add no
    width, so a harmless candidate (few flips) gets a tight interval even on a small test set.
    """
    base_ok, cand_ok = base_pred == y, cand_pred == y
    return bootstrap_delta_ci_counts(int(np.sum(base_ok & ~cand_ok)), int(np.sum(~base_ok & cand_ok)), len(y),
                                     n_boot, level, seed)


def bootstrap_delta_ci_counts(lost: int, gained: int, n: int, n_boot: int = 2000, level: float = 0.95,
                              seed: int = 0) -> tuple[float, float]:
    """The same paired bootstrap from the counts alone: `lost` rows only the baseline gets right,
    `gained` rows only the candidate gets right, of `n`.

    Each row's difference is -1, 0 or +1, so a resample's mean is fixed by how many of each it
    draws: drawing those counts (a multinomial) is the row bootstrap itself, at O(n_boot) instead
    of O(n_boot * n), which lets bench/gate_power.py run the gate thousands of times.
    """
    if n == 0:
        return float("nan"), float("nan")
    counts = np.random.default_rng(seed).multinomial(n, [lost / n, gained / n, max(0.0, 1 - (lost + gained) / n)],
                                                     size=n_boot)
    deltas = (counts[:, 1] - counts[:, 0]) / n
    alpha = (1 - level) / 2
    return float(np.quantile(deltas, alpha)), float(np.quantile(deltas, 1 - alpha))


def flip_matrix(base_pred: np.ndarray, cand_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts: row = baseline's class, column = candidate's; off-diagonal = flips."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (base_pred, cand_pred), 1)
    return m


def expected_calibration_error(y: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins (Guo et al. 2017)."""
    if len(y) == 0:
        return float("nan")
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(float((pred[mask] == y[mask]).mean()) - float(conf[mask].mean()))
    return float(ece)


def brier_rows(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per row: the squared distance of the probabilities to the one-hot label."""
    onehot = np.zeros_like(probs, dtype=np.float64)
    onehot[np.arange(len(y)), y] = 1.0
    return np.sum((probs.astype(np.float64) - onehot) ** 2, axis=1)


def brier_score(y: np.ndarray, probs: np.ndarray) -> float:
    """Multi-class Brier score: mean over rows of the squared distance to the one-hot label."""
    if len(y) == 0:
        return float("nan")
    return float(np.mean(brier_rows(y, probs)))


def reliability_curve(y: np.ndarray, probs: np.ndarray, bins: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per confidence bin: mean confidence, accuracy, row count (for the reliability diagram)."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    mean_conf, acc, count = np.full(bins, np.nan), np.full(bins, np.nan), np.zeros(bins, dtype=np.int64)
    for b in range(bins):
        mask = which == b
        count[b] = mask.sum()
        if count[b]:
            mean_conf[b], acc[b] = conf[mask].mean(), (pred[mask] == y[mask]).mean()
    return mean_conf, acc, count
