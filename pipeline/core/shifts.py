"""Planted shifts of square single-channel images stored as pixel rows, for measuring what the monitor catches.

Each takes rows of a batch (and their labels, for the class mix) and returns shifted rows; values stay in
the range of the data, so only the distribution moves, never the format.
"""
from __future__ import annotations

import numpy as np


def pixel_shift(x: np.ndarray, pixels: int = 1) -> np.ndarray:
    """Every image moved `pixels` to the right, the freed columns blank: a camera or crop that moved."""
    side = int(round(np.sqrt(x.shape[1])))
    img = np.asarray(x, dtype=np.float64).reshape(len(x), side, side)
    out = np.zeros_like(img)
    out[:, :, pixels:] = img[:, :, :side - pixels]
    return out.reshape(len(x), -1)


def noise(x: np.ndarray, sd: float, rng: np.random.Generator, lo: float = 0.0, hi: float = 16.0) -> np.ndarray:
    """Gaussian sensor noise, clipped to the value range and rounded as the data is."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) + rng.normal(0.0, sd, size=x.shape)), lo, hi)


def class_mix(y: np.ndarray, rows: int, classes: tuple[int, ...], share: float, rng: np.random.Generator
              ) -> np.ndarray:
    """Row indices of a batch in which `classes` make up `share` of the rows (drawn with replacement)."""
    y = np.asarray(y)
    inside = np.flatnonzero(np.isin(y, classes))
    outside = np.flatnonzero(~np.isin(y, classes))
    k = int(round(rows * share))
    return np.concatenate([rng.choice(inside, size=k), rng.choice(outside, size=rows - k)])
