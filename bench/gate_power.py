"""The gate's reported detectable effect against simulation: planted accuracy drops on synthetic predictions.

    .venv/bin/python bench/gate_power.py [--trials 200] [--sizes 200,360,1000,5000] [--background 0.01]

For each test size n and each planted drop (0.5 to 5 points, and the reported detectable effect
itself), `--trials` synthetic pairs of predictions over 10 balanced classes, fp32 about 95% accurate:
each row is lost (only fp32 right) with probability background/2 + drop, gained with
background/2, else both right or both wrong alike. Every trial goes through the gate's own
`compare` and `quality_checks` at the default GateConfig, and the bench counts how often

    McNemar   the McNemar check fails: what the reported figure models;
    accuracy  any accuracy check fails (McNemar, or the interval bound's absolute or relative loss);
    quality   any quality, significance or per-class check fails.

The reported figure is pipeline.core.power's, at the true background; beside it, the figure the gate
itself reports from one test set (median and 10-90% range over the benign trials, which estimate the
background from their own flips).

Agreement, stated: every observed McNemar rate lies within 3 binomial standard errors (+0.01) of the
exact prediction, and at the reported detectable effect the observed rate is the configured power
within that same margin. Benign candidates (no drop, the background's symmetric flips only) must be
falsely rejected at most 5% of the time by the accuracy checks at the default size (360 rows).
Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from pipeline.core.config import GateConfig
from pipeline.core.evaluate import EvalResult
from pipeline.core.gate_checks import Check, compare, quality_checks
from pipeline.core.power import McNemarRule, detectable_drop, detection_probability, power_report

CLASSES = 10
DROPS = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05)
ACCURACY = {Check.ACCURACY_LOSS, Check.ACCURACY_RELATIVE_LOSS, Check.MCNEMAR}
BASE_ACCURACY = 0.95
DEFAULT_SIZE = 360
REPORTED = 50  # benign trials whose own power report is computed (each takes ~50 ms)


def paired_predictions(rng: np.random.Generator, y: np.ndarray, background: float, drop: float):
    """fp32's and the candidate's predictions with lost/gained/same rows drawn as the power model says."""
    n = len(y)
    p_lost, p_gained = background / 2 + drop, background / 2
    u = rng.random(n)
    lost, gained = u < p_lost, (u >= p_lost) & (u < p_lost + p_gained)
    same_right = (~lost & ~gained) & (rng.random(n) < (BASE_ACCURACY - p_lost) / (1 - p_lost - p_gained))
    wrong = (y + rng.integers(1, CLASSES, n)) % CLASSES
    ref = np.where(lost | same_right, y, wrong)
    cand = np.where(gained | same_right, y, wrong)
    return ref, cand


def evaluation(name: str, y: np.ndarray, pred: np.ndarray) -> EvalResult:
    """What the gate reads of one model's test predictions, as scikit-learn's macro averages with
    zero_division=0 compute them (counted with numpy here: sklearn's checks would take most of the run)."""
    hits = np.bincount(y[pred == y], minlength=CLASSES)
    support, predicted = np.bincount(y, minlength=CLASSES), np.bincount(pred, minlength=CLASSES)
    recall = np.divide(hits, support, out=np.zeros(CLASSES), where=support > 0)
    precision = np.divide(hits, predicted, out=np.zeros(CLASSES), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(CLASSES), where=precision + recall > 0)
    return EvalResult(name, float(np.mean(pred == y)), float(f1.mean()), tuple(float(v) for v in recall), pred,
                      macro_precision=float(precision.mean()), macro_recall=float(recall.mean()))


def trial(rng: np.random.Generator, y: np.ndarray, background: float, drop: float, cfg: GateConfig,
          with_report: bool = False) -> tuple[bool, bool, bool, float]:
    ref_pred, cand_pred = paired_predictions(rng, y, background, drop)
    ref, cand = evaluation("fp32", y, ref_pred), evaluation("bf16", y, cand_pred)
    cmp = compare(ref, cand, y, cfg)
    failed = {c.key for c in quality_checks(ref, cand, cmp, cfg, ()) if not c.passed}
    reported = power_report(ref, cand, cmp, y, cfg).accuracy.drop if with_report else float("nan")
    return Check.MCNEMAR in failed, bool(failed & ACCURACY), bool(failed), reported


def rates(rng, y, background, drop, cfg, trials, with_report=False) -> tuple[np.ndarray, np.ndarray]:
    """Rejection rates (McNemar, accuracy, quality) and, for the first REPORTED trials, the gate's own figure."""
    out = [trial(rng, y, background, drop, cfg, with_report and i < REPORTED) for i in range(trials)]
    return np.array([o[:3] for o in out], dtype=float).mean(axis=0), np.array([o[3] for o in out])


def margin(p: float, trials: int) -> float:
    return 3 * np.sqrt(p * (1 - p) / trials) + 0.01


def crossing(drops: list[float], observed: list[float], power: float) -> float:
    """The drop at which the observed curve first reaches `power`, by linear interpolation."""
    for (d0, r0), (d1, r1) in zip(zip(drops, observed), zip(drops[1:], observed[1:])):
        if r0 < power <= r1:
            return d0 + (power - r0) * (d1 - d0) / (r1 - r0)
    return float("nan")


def one_size(n: int, background: float, cfg: GateConfig, trials: int, rng: np.random.Generator) -> dict:
    y = np.arange(n) % CLASSES
    rule = McNemarRule(cfg.mcnemar_alpha)
    figure = detectable_drop(n, background, rule, cfg.power)
    benign, reported = rates(rng, y, background, 0.0, cfg, trials, with_report=True)
    reported = reported[np.isfinite(reported)]
    print(f"\nn = {n}: reported detectable effect {figure * 100:.2f} points at {cfg.power:.0%} "
          f"(background {background:.1%}); the gate's own figure over {len(reported)} benign test sets: median "
          f"{np.median(reported) * 100:.2f} [{np.percentile(reported, 10) * 100:.2f}, "
          f"{np.percentile(reported, 90) * 100:.2f}]")
    print(" drop pts  predicted  McNemar  obs/pred  margin  accuracy  quality")
    points, worst = [], 0.0
    for drop in sorted({0.0, figure, *(d for d in DROPS if abs(d - figure) > 1e-4)}):
        observed = benign if drop == 0.0 else rates(rng, y, background, drop, cfg, trials)[0]
        predicted = detection_probability(n, background, drop, rule)
        ok = abs(observed[0] - predicted) <= margin(predicted, trials)
        worst = max(worst, abs(observed[0] - predicted) / margin(predicted, trials))
        mark = " <- reported" if drop == figure else ""
        print(f"  {drop * 100:6.2f}   {predicted:8.3f}  {observed[0]:7.3f}  {observed[0] / max(predicted, 1e-9):8.2f}"
              f"  {'ok' if ok else 'OFF':>6}  {observed[1]:8.3f}  {observed[2]:7.3f}{mark}")
        points.append((drop, predicted, *observed))
    at_figure = next(p for p in points if p[0] == figure)
    curve = [(p[0], p[2]) for p in points]
    seen = crossing([d for d, _ in curve], [r for _, r in curve], cfg.power)
    print(f"  observed {cfg.power:.0%} crossing (McNemar, interpolated) {seen * 100:.2f} points vs reported "
          f"{figure * 100:.2f}; at the reported figure {at_figure[2]:.3f} (margin +-{margin(cfg.power, trials):.3f}); "
          f"worst deviation {worst:.2f} margins; benign false rejection: McNemar {benign[0]:.3f}, "
          f"accuracy {benign[1]:.3f}, quality {benign[2]:.3f}")
    return {"detectable_pts": round(figure * 100, 3), "observed_crossing_pts": round(seen * 100, 3),
            "rate_at_detectable": round(at_figure[2], 3), "worst_deviation_in_margins": round(worst, 3),
            "agree": bool(worst <= 1.0), "gate_figure_median_pts": round(float(np.median(reported)) * 100, 3),
            "false_rejection": {"mcnemar": float(benign[0]), "accuracy": float(benign[1]), "quality": float(benign[2])},
            "curve": [{"drop_pts": round(p[0] * 100, 3), "predicted": round(p[1], 4), "mcnemar": float(p[2]),
                       "accuracy": float(p[3]), "quality": float(p[4])} for p in points]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--sizes", default="200,360,1000,5000")
    parser.add_argument("--background", type=float, default=0.01, help="share of rows flipped either way")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg, rng, start = GateConfig(), np.random.default_rng(args.seed), time.perf_counter()
    sizes = {int(n): one_size(int(n), args.background, cfg, args.trials, rng) for n in args.sizes.split(",")}
    default = sizes.get(DEFAULT_SIZE)
    benign_ok = bool(default["false_rejection"]["accuracy"] <= 0.05) if default else None
    agree = all(s["agree"] for s in sizes.values())
    print(f"\nagreement within 3 standard errors + 0.01 at every point: {agree}; benign false rejection by the "
          f"accuracy checks at {DEFAULT_SIZE} rows <= 5%: {benign_ok}; {time.perf_counter() - start:.0f} s")
    print(json.dumps({"bench": "gate_power", "trials": args.trials, "background": args.background,
                      "power": cfg.power, "mcnemar_alpha": cfg.mcnemar_alpha, "agree": agree,
                      "benign_false_rejection_ok": benign_ok, "sizes": sizes}))


if __name__ == "__main__":
    main()
