"""Accuracy without labels: confidence-based performance estimation (the method behind NannyML's CBPE).

A calibrated classifier that says 0.9 is right 9 times in 10, so the mean of its calibrated top-class
probability over a batch is the accuracy it should have there. Calibration is temperature scaling of
the champion's probabilities, fitted on the held-out test split at registration and stored with the
monitoring reference. The estimate holds while the relation between inputs and labels stays as it was
(covariate or class-mix shift); it cannot see a change in what the labels mean, and it is optimistic
when a shift pushes rows into regions where the model is confidently wrong. Pure numpy and scipy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.stats import norm

ECE_BINS = 10
LOG_T_BOUNDS = (-3.0, 3.0)  # temperatures e^-3 .. e^3: sharper or flatter by up to 20x
EPS = 1e-12


@dataclass(frozen=True)
class Calibrator:
    temperature: float
    rows: int  # held-out rows it was fitted on
    ece_before: float  # expected calibration error of the raw probabilities on those rows
    ece_after: float  # cross-fitted: each half calibrated by the temperature fitted on the other half
    accuracy: float  # realised accuracy on those rows
    expected_accuracy: float  # the calibrated estimate on the same rows (close to `accuracy` when it works)


@dataclass(frozen=True)
class AccuracyEstimate:
    expected: float  # expected accuracy on the batch
    low: float  # interval for the batch's realised accuracy
    high: float
    reference: float  # registered test accuracy
    drop: float  # reference - expected
    trusted: bool
    why_untrusted: str | None
    realised: float | None = None  # with labels
    error: float | None = None  # expected - realised


def calibrate(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of log-probabilities over a temperature: the same ranking, sharper (T < 1) or flatter (T > 1)."""
    z = np.log(np.maximum(np.asarray(probs, dtype=np.float64), EPS)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(probs: np.ndarray, y: np.ndarray, temperature: float) -> float:
    p = calibrate(probs, temperature)[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.maximum(p, EPS))))


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The temperature of least negative log-likelihood on held-out rows."""
    res = minimize_scalar(lambda t: _nll(probs, y, float(np.exp(t))), bounds=LOG_T_BOUNDS, method="bounded")
    return float(np.exp(res.x))


def ece(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top-class probability, equal-width bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(conf[m].mean() - correct[m].mean())
    return float(total / max(len(y), 1))


def fit_calibrator(probs: np.ndarray, y: np.ndarray, seed: int = 0) -> Calibrator:
    """Temperature on all held-out rows; its calibration error measured out of sample by two-fold cross-fitting."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    halves = (order[: len(y) // 2], order[len(y) // 2:])
    crossed = np.empty_like(probs)
    for fit, apply in (halves, halves[::-1]):
        crossed[apply] = calibrate(probs[apply], fit_temperature(probs[fit], y[fit]))
    t = fit_temperature(probs, y)
    return Calibrator(t, len(y), ece(probs, y), ece(crossed, y), float(np.mean(probs.argmax(axis=1) == y)),
                      float(calibrate(probs, t).max(axis=1).mean()))


def estimate_accuracy(probs: np.ndarray, calibrator: Calibrator, reference_accuracy: float, max_ece: float,
                      confidence: float, y: np.ndarray | None = None) -> AccuracyEstimate:
    """Expected accuracy of a batch from the champion's probabilities. The interval is that of the realised
    accuracy when each row is right with its calibrated probability (a Poisson-binomial, normal approximation);
    `y`: class indices, -1 where unknown."""
    conf = calibrate(probs, calibrator.temperature).max(axis=1)
    expected = float(conf.mean())
    z = float(norm.ppf(0.5 + confidence / 2))
    half = z * float(np.sqrt(np.sum(conf * (1 - conf)))) / max(len(conf), 1)
    why = None
    if calibrator.ece_after > max_ece:
        why = (f"calibration error on the held-out reference {calibrator.ece_after:.3f} > {max_ece} after "
               "temperature scaling: the model's confidence does not track its accuracy")
    elif calibrator.rows < 100:
        why = f"calibrated on only {calibrator.rows} held-out rows"
    realised = error = None
    if y is not None and (np.asarray(y) >= 0).any():
        known = np.asarray(y) >= 0
        realised = float(np.mean(probs[known].argmax(axis=1) == np.asarray(y)[known]))
        error = float(conf[known].mean() - realised)
    return AccuracyEstimate(expected, max(0.0, expected - half), min(1.0, expected + half), float(reference_accuracy),
                            float(reference_accuracy - expected), why is None, why, realised, error)
