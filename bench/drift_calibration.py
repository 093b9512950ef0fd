"""False alarms, detection and the accuracy estimate of `mpops monitor`'s checks, on the bundled digits.

    .venv/bin/python bench/drift_calibration.py [--batches 200] [--sizes 50,200,1000] [--rate 0.01]

Setup as at registration: a classifier (scikit-learn's logistic regression, standing in for the
champion: the checks see only its probabilities) is fitted on 75% of the training split; the other 25%
is the held-out split the reference takes its predictions, accuracy and calibrator from; feature
bins and the KS sample come from the whole training split. Batches come from the test split,
which neither saw: `--batches` unshifted batches per size (drawn without replacement up to the
split's 360 rows, with replacement above), then the same count with each planted shift:

    pixel-shift   every image moved one pixel right
    noise         Gaussian noise, sd 3 grey levels, clipped and rounded
    class-mix     classes 0 and 1 make up 60% of the batch (20% in the data)

Every batch goes through pipeline.core.drift.compare without labels, as production batches arrive;
the labels are used afterwards to measure the estimate's error against the realised accuracy.
Prints one line per (shift, size) and ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from pipeline.core import shifts
from pipeline.core.config import MonitorConfig
from pipeline.core.data import assign_split
from pipeline.core.drift import compare, reference_stats

SHIFTS = ("none", "pixel-shift", "noise", "class-mix")


def setup(seed: int = 0):
    """Test rows, their labels, the probability function and the reference."""
    import pandas as pd
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    d = load_digits()
    frame = pd.DataFrame(d.data, columns=[f"pixel_{i}" for i in range(64)]).assign(label=d.target)
    split = assign_split(frame, "label", 0.2, seed).to_numpy()
    x, y = d.data.astype(np.float64), d.target.astype(np.int64)
    train = np.flatnonzero(split == "train")
    rng = np.random.default_rng(seed)
    held = np.isin(train, rng.choice(train, size=len(train) // 4, replace=False))
    fit, val = train[~held], train[held]
    model = LogisticRegression(max_iter=3000, C=0.05).fit(x[fit] / 16.0, y[fit])
    proba = lambda rows: model.predict_proba(rows / 16.0)  # noqa: E731
    p_val = proba(x[val])
    ref = reference_stats(x[train], tuple(frame.columns[:64]), tuple(range(10)), "fp32", p_val.argmax(1),
                          float(np.mean(p_val.argmax(1) == y[val])), None, MonitorConfig(), p_val, y[val])
    test = split == "test"
    return x[test], y[test], proba, ref


def _batch(kind: str, x: np.ndarray, y: np.ndarray, rows: int, rng: np.random.Generator):
    if kind == "class-mix":
        idx = shifts.class_mix(y, rows, (0, 1), 0.6, rng)
    else:
        idx = rng.choice(len(x), size=rows, replace=rows > len(x))
    xb = x[idx]
    if kind == "pixel-shift":
        xb = shifts.pixel_shift(xb)
    elif kind == "noise":
        xb = shifts.noise(xb, 3.0, rng)
    return xb, y[idx]


def measure(batches: int = 200, sizes: tuple[int, ...] = (50, 200, 1000), rate: float = 0.01, seed: int = 0,
            kinds: tuple[str, ...] = SHIFTS) -> dict[str, dict[int, dict[str, float]]]:
    """Per shift and size: alarm rate, mean estimated and realised accuracy, mean and max |estimate error|."""
    x, y, proba, ref = setup(seed)
    cfg = MonitorConfig(false_alarm_rate=rate)
    out: dict[str, dict[int, dict[str, float]]] = {}
    for k, kind in enumerate(kinds):
        out[kind] = {}
        for rows in sizes:
            rng = np.random.default_rng([seed, k, rows])
            alarms, errors, est, real = 0, [], [], []
            for _ in range(batches):
                xb, yb = _batch(kind, x, y, rows, rng)
                probs = proba(xb)
                report = compare(xb, ref, cfg, probs.argmax(1), probs=probs)
                alarms += report.drifted
                est.append(report.estimate.expected)
                real.append(float(np.mean(probs.argmax(1) == yb)))
                errors.append(est[-1] - real[-1])
            out[kind][rows] = {"alarm_rate": alarms / batches, "estimated": float(np.mean(est)),
                               "realised": float(np.mean(real)), "mean_abs_error": float(np.mean(np.abs(errors))),
                               "bias": float(np.mean(errors)), "max_abs_error": float(np.max(np.abs(errors)))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--sizes", default="50,200,1000")
    ap.add_argument("--rate", type=float, default=0.01)
    args = ap.parse_args()
    start = time.perf_counter()
    res = measure(args.batches, tuple(int(s) for s in args.sizes.split(",")), args.rate)
    for kind, by_size in res.items():
        for rows, r in by_size.items():
            what = "false alarms" if kind == "none" else "detected"
            print(f"{kind:12s} n={rows:5d}  {what} {r['alarm_rate']:.3f}  estimated accuracy {r['estimated']:.3f} "
                  f"realised {r['realised']:.3f}  |error| mean {r['mean_abs_error']:.3f} max {r['max_abs_error']:.3f}")
    print(f"configured false-alarm rate {args.rate}; {args.batches} batches per row; "
          f"{time.perf_counter() - start:.1f} s")
    print(json.dumps({"rate": args.rate, "batches": args.batches, "results": res}))


if __name__ == "__main__":
    main()
