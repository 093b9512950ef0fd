"""Drift cut-offs that hold a false-alarm rate whatever the batch size.

A fixed PSI cut-off alarms on most small unshifted batches (PSI of n rows over B bins is about
(B - 1) / n from sampling noise alone) and on almost none of the large shifted ones. Here the cut-off
for a batch of n rows comes from the reference itself: draw many batches of n rows, and a reference of
the reference's own size, from the reference's bin shares, compute their PSI, and take a quantile.

The quantile level is shared by all features and chosen so that at most `alpha` of the simulated
batches have any feature above its cut-off (max-rank, as in Westfall-Young's step-down): the rate
holds for the whole family of features, not per feature. Features are simulated independently; pixels
and most real features are positively correlated, for which independence overstates the family's
chance of an alarm, so the true rate is at most `alpha`.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.stats import kstwobign

RESAMPLES = 4000
SEED = 0
# Same floor as pipeline.core.drift.PSI_FLOOR (not imported: drift imports this module).
PSI_FLOOR = 1e-4


def psi_rows(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """PSI of each row pair of two (rows, bins) share arrays."""
    e = np.maximum(expected, PSI_FLOOR)
    a = np.maximum(actual, PSI_FLOOR)
    return np.sum((a - e) * np.log(a / e), axis=-1)


def familywise_cutoffs(stats: np.ndarray, alpha: float) -> np.ndarray:
    """Per-column cut-offs for a (resamples, columns) array of null statistics: a row alarms when any of its
    columns is strictly above that column's cut-off, and at most `alpha` of the rows alarm."""
    rows = len(stats)
    ranks = np.argsort(np.argsort(stats, axis=0, kind="stable"), axis=0, kind="stable")
    worst = ranks.max(axis=1)
    level = int(np.quantile(worst, 1.0 - alpha, method="higher"))
    return np.sort(stats, axis=0)[min(level, rows - 1)]


@lru_cache(maxsize=128)
def _cutoffs(shares: tuple[tuple[float, ...], ...], reference_rows: int, rows: int, alpha: float,
             resamples: int, seed: int) -> tuple[float, ...]:
    rng = np.random.default_rng(seed)
    stats = np.empty((resamples, len(shares)))
    for j, s in enumerate(shares):
        p = np.asarray(s, dtype=np.float64)
        p = p / p.sum()
        batch = rng.multinomial(rows, p, size=resamples) / rows
        ref = rng.multinomial(reference_rows, p, size=resamples) / reference_rows
        stats[:, j] = psi_rows(ref, batch)
    return tuple(float(c) for c in familywise_cutoffs(stats, alpha))


def psi_cutoffs(shares: list[tuple[float, ...]] | tuple[tuple[float, ...], ...], reference_rows: int, rows: int,
                alpha: float, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Cut-off of each share vector's PSI for a batch of `rows` rows against a reference of `reference_rows`;
    cached per (shares, sizes, alpha), so a monitor that sees one batch size pays the simulation once."""
    key = tuple(tuple(float(v) for v in s) for s in shares)
    return np.asarray(_cutoffs(key, int(reference_rows), int(rows), float(alpha), int(resamples), int(seed)))


def ks_columns(reference_sorted: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sample KS statistic and p-value of each column of `x` against the matching column of
    `reference_sorted` (each column sorted). The p-value is Kolmogorov's limit distribution at
    sqrt(m n / (m + n)) D: exact or finite-n p-values cost tens of milliseconds per feature, and on
    discrete features (pixels) every version is conservative."""
    m, n = reference_sorted.shape[0], x.shape[0]
    stat = np.empty(x.shape[1])
    for j in range(x.shape[1]):
        ref, cur = reference_sorted[:, j], np.sort(x[:, j])
        points = np.concatenate([ref, cur])
        cdf_ref = np.searchsorted(ref, points, side="right") / m
        cdf_cur = np.searchsorted(cur, points, side="right") / n
        stat[j] = np.max(np.abs(cdf_ref - cdf_cur))
    return stat, np.clip(kstwobign.sf(stat * np.sqrt(m * n / (m + n))), 0.0, 1.0)
