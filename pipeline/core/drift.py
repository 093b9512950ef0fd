"""Drift statistics: a batch compared with the reference computed at registration.

The reference (pipeline.core.drift_reference) is stored with the model, so monitoring never needs the
training data. Cut-offs come from the reference for the batch's size (pipeline.core.drift_cutoff), so the
false-alarm rate on unshifted batches is the configured one whatever the size. Pure numpy and scipy.
"""
from __future__ import annotations

import re

from dataclasses import asdict, dataclass, replace

import numpy as np

from pipeline.core import strict_json
from pipeline.core.config import MonitorConfig
from pipeline.core.drift_cutoff import ks_columns, psi_cutoffs
from pipeline.core.drift_reference import (FP16_MAX, PSI_FLOOR, REFERENCE_SEED, FeatureReference,  # noqa: F401
                                           ReferenceStats, bin_edges, bin_shares, class_shares, fp16_overflow,
                                           plain_value, psi, reference_stats)
from pipeline.core.performance import AccuracyEstimate, estimate_accuracy


# MLflow metric names allow letters, digits and `_-. :/`; a one-hot column is named `column=value`.
_NOT_IN_METRIC_NAMES = re.compile(r"[^A-Za-z0-9_\-. :/]")


def metric_safe(name: str) -> str:
    return _NOT_IN_METRIC_NAMES.sub("_", name)

@dataclass(frozen=True)
class FeatureDrift:
    name: str
    psi: float
    ks_statistic: float
    ks_pvalue: float
    reference_mean: float
    batch_mean: float
    fp16_overflow: int
    drifted: bool
    psi_cutoff: float = float("nan")  # for this batch's size: calibrated, or monitor.psi_threshold if larger


@dataclass(frozen=True)
class DriftReport:
    precision: str
    rows: int
    features: tuple[FeatureDrift, ...]
    ks_alpha_corrected: float  # Bonferroni: monitor.ks_alpha / number of features
    drifted_share: float
    prediction_psi: float
    prediction_shares: tuple[float, ...]
    reference_accuracy: float
    accuracy: float | None  # None: the batch has no labels
    labelled_rows: int
    reference_agreement: float | None  # None: no fp32 twin stored
    agreement: float | None
    fp16_overflow: int
    drifted: bool
    reasons: tuple[str, ...]  # one line per failed check; empty when nothing drifted
    false_alarm_rate: float = float("nan")  # monitor.false_alarm_rate the cut-offs were derived for
    prediction_psi_cutoff: float = float("nan")
    estimate: AccuracyEstimate | None = None  # None: the reference has no calibrator
    distinct_rows: int = 0  # rows the KS test counted (repeats once)

    @property
    def drifted_features(self) -> tuple[FeatureDrift, ...]:
        return tuple(sorted((f for f in self.features if f.drifted), key=lambda f: -f.psi))

    @property
    def verdict(self) -> str:
        if self.drifted:
            return "drift: " + "; ".join(self.reasons)
        top = max(self.features, key=lambda f: f.psi)
        return (f"no drift: 0 of {len(self.features)} features drifted (largest PSI {top.name} {top.psi:.3f}), "
                f"prediction PSI {self.prediction_psi:.3f}"
                + (f", accuracy {self.accuracy:.4f}" if self.accuracy is not None else "")
                + (f", fp32-twin agreement {self.agreement:.2%}" if self.agreement is not None else ""))

    def metrics(self) -> dict[str, float]:
        """Dotted MLflow metric names; per-feature figures for every feature."""
        m: dict[str, float] = {
            "monitor.rows": self.rows, "monitor.distinct_rows": self.distinct_rows, "monitor.drifted": float(self.drifted),
            "monitor.drifted_share": self.drifted_share, "monitor.drifted_features": len(self.drifted_features),
            "monitor.prediction_psi": self.prediction_psi, "monitor.fp16_overflow": self.fp16_overflow,
            "monitor.reference_accuracy": self.reference_accuracy,
        }
        if self.estimate is not None:
            e = self.estimate
            m.update({"monitor.estimated_accuracy": e.expected, "monitor.estimated_accuracy_low": e.low,
                      "monitor.estimated_accuracy_high": e.high, "monitor.estimated_accuracy_drop": e.drop,
                      "monitor.estimate_trusted": float(e.trusted)})
            if e.error is not None:
                m["monitor.estimation_error"] = e.error
        if self.accuracy is not None:
            m["monitor.accuracy"] = self.accuracy
            m["monitor.accuracy_drop"] = self.reference_accuracy - self.accuracy
        if self.agreement is not None and self.reference_agreement is not None:
            m["monitor.agreement"] = self.agreement
            m["monitor.reference_agreement"] = self.reference_agreement
            m["monitor.agreement_drop"] = self.reference_agreement - self.agreement
        for f in self.features:
            name = metric_safe(f.name)
            m[f"monitor.psi.{name}"] = f.psi
            m[f"monitor.psi_cutoff.{name}"] = f.psi_cutoff
            m[f"monitor.ks_statistic.{name}"] = f.ks_statistic
            m[f"monitor.ks_pvalue.{name}"] = f.ks_pvalue
            if f.fp16_overflow:
                m[f"monitor.fp16_overflow.{name}"] = f.fp16_overflow
        return m

    def to_json(self) -> str:
        return strict_json.dumps({**asdict(self), "verdict": self.verdict}, indent=2)


def names_list(feats, limit: int = 8) -> str:
    shown = ", ".join(feats[:limit])
    return shown + (f" and {len(feats) - limit} more" if len(feats) > limit else "")


# The alarm budget monitor.false_alarm_rate is shared equally (Bonferroni) by the checks that fire on
# unlabelled batches: feature drift, prediction drift and the estimated-accuracy drop.
ALARM_CHECKS = 3


def _feature_drift(x: np.ndarray, reference: ReferenceStats, cfg: MonitorConfig, alpha: float,
                   distinct: np.ndarray) -> list[FeatureDrift]:
    overflow = fp16_overflow(x)
    cut = np.maximum(psi_cutoffs([f.shares for f in reference.features], reference.train_rows, len(x),
                                 cfg.false_alarm_rate / ALARM_CHECKS), cfg.psi_threshold)
    sample = np.sort(np.array([f.sample for f in reference.features], dtype=np.float64).T, axis=0)
    ks_stat, ks_p = ks_columns(sample, x[distinct])
    feats = []
    for j, ref in enumerate(reference.features):
        col = x[:, j]
        p = psi(np.asarray(ref.shares), bin_shares(col, np.asarray(ref.edges)))
        # Both must agree: the PSI cut-off holds the false-alarm rate; KS, a second opinion on the whole
        # distribution, keeps one noisy bin from raising an alarm by itself.
        drifted = p > cut[j] and float(ks_p[j]) < alpha
        feats.append(FeatureDrift(ref.name, p, float(ks_stat[j]), float(ks_p[j]), ref.mean, float(col.mean()),
                                  int(overflow[j]), bool(drifted), float(cut[j])))
    return feats


def _prediction_drift(reference: ReferenceStats, cfg: MonitorConfig, pred: np.ndarray
                      ) -> tuple[np.ndarray, float, float, str | None]:
    shares = class_shares(pred, len(reference.classes))
    value = psi(np.asarray(reference.prediction_shares), shares)
    cut = max(float(psi_cutoffs([reference.prediction_shares], reference.test_rows, len(pred),
                                cfg.false_alarm_rate / ALARM_CHECKS)[0]), cfg.max_prediction_psi)
    if value <= cut:
        return shares, value, cut, None
    return shares, value, cut, (f"prediction drift: PSI of the predicted class shares {value:.3f} vs the test "
                                f"split, cut-off {cut:.3f} for {len(pred)} rows")


def _estimate(reference: ReferenceStats, cfg: MonitorConfig, probs: np.ndarray | None, y: np.ndarray | None,
              features_moved: int) -> tuple[AccuracyEstimate | None, str | None]:
    if probs is None or reference.calibration is None:
        return None, None
    e = estimate_accuracy(np.asarray(probs, dtype=np.float64), reference.calibration, reference.test_accuracy,
                          cfg.max_calibration_error, 1.0 - cfg.false_alarm_rate / ALARM_CHECKS, y)
    if e.trusted and features_moved:
        # Calibration was fitted where the reference's rows were; rows that moved elsewhere can be confidently
        # wrong (a one-pixel image shift: 0.77 expected, 0.31 realised in bench/drift_calibration.py).
        e = replace(e, trusted=False, why_untrusted=f"{features_moved} feature(s) drifted: the calibration is "
                    "extrapolated to inputs unlike the reference, where confidence can stay high while accuracy falls")
    # An untrusted estimate is reported, never alarmed on; a drop must also be beyond the batch's noise.
    if not e.trusted or e.drop <= cfg.max_estimated_accuracy_drop or e.high >= e.reference:
        return e, None
    return e, (f"estimated accuracy drop: {e.expected:.4f} expected without labels ({e.low:.4f}-{e.high:.4f}) vs "
               f"{e.reference:.4f} registered ({-e.drop:+.4f}), threshold {cfg.max_estimated_accuracy_drop}")


def _accuracy(reference: ReferenceStats, cfg: MonitorConfig, pred: np.ndarray, y: np.ndarray | None
              ) -> tuple[float | None, int, str | None]:
    """Accuracy on the labelled rows (`y` -1 where unknown), their count, and the drop's reason if too large."""
    if y is None:
        return None, 0, None
    y = np.asarray(y)
    known = y >= 0
    labelled = int(known.sum())
    if not labelled:
        return None, 0, None
    accuracy = float(np.mean(np.asarray(pred)[known] == y[known]))
    drop = reference.test_accuracy - accuracy
    if drop <= cfg.max_accuracy_drop:
        return accuracy, labelled, None
    return accuracy, labelled, (f"accuracy drop: {accuracy:.4f} on {labelled} labelled rows vs "
                                f"{reference.test_accuracy:.4f} registered ({-drop:+.4f}), threshold {cfg.max_accuracy_drop}")


def _agreement(reference: ReferenceStats, cfg: MonitorConfig, pred: np.ndarray, twin_pred: np.ndarray | None
               ) -> tuple[float | None, str | None]:
    if twin_pred is None or reference.agreement_rate is None:
        return None, None
    agreement = float(np.mean(np.asarray(pred) == np.asarray(twin_pred)))
    drop = reference.agreement_rate - agreement
    if drop <= cfg.max_agreement_drop:
        return agreement, None
    return agreement, (f"precision drift: the {reference.precision} champion agrees with its fp32 twin on "
                       f"{agreement:.2%} of rows vs {reference.agreement_rate:.2%} at registration "
                       f"({-drop:+.2%}), threshold {cfg.max_agreement_drop:.2%}")


def compare(x: np.ndarray, reference: ReferenceStats, cfg: MonitorConfig, champion_pred: np.ndarray,
            twin_pred: np.ndarray | None = None, y: np.ndarray | None = None,
            probs: np.ndarray | None = None) -> DriftReport:
    """Compare a batch with the reference. `x`: (rows, features) in reference.feature_columns order;
    predictions and `y` are class indices (`y` -1 where the label is missing or unknown); `probs`: the
    champion's class probabilities, for the accuracy estimate."""
    x = np.asarray(x, dtype=np.float64)
    n_feat = len(reference.features)
    alpha = cfg.ks_alpha / max(n_feat, 1)
    # KS counts repeated rows once: its p-value assumes independent rows, and copies (a client resending
    # requests, a batch assembled with replacement from a small pool) would make it overconfident.
    # PSI, a size of change, is measured on every row.
    distinct = np.sort(np.unique(x, axis=0, return_index=True)[1])
    feats = _feature_drift(x, reference, cfg, alpha, distinct)
    reasons = []
    drifted_names = [f.name for f in sorted(feats, key=lambda f: -f.psi) if f.drifted]
    share = len(drifted_names) / max(n_feat, 1)
    if share > cfg.max_drifted_share:
        reasons.append(f"feature drift: {len(drifted_names)} of {n_feat} features drifted ({share:.1%}, threshold "
                       f"{cfg.max_drifted_share:.1%}; PSI above its cut-off for {len(x)} rows and KS p < "
                       f"{alpha:.2g}): {names_list(drifted_names)}")
    pred_shares, pred_psi, pred_cut, why_pred = _prediction_drift(reference, cfg, champion_pred)
    estimate, why_est = _estimate(reference, cfg, probs, y, len(drifted_names))
    accuracy, labelled, why = _accuracy(reference, cfg, champion_pred, y)
    agreement, why_agree = _agreement(reference, cfg, champion_pred, twin_pred)
    reasons += [r for r in (why_pred, why_est, why, why_agree) if r]
    total_overflow = sum(f.fp16_overflow for f in feats)
    if total_overflow > cfg.max_fp16_overflow:
        where = [f"{f.name} ({f.fp16_overflow})" for f in sorted(feats, key=lambda f: -f.fp16_overflow) if f.fp16_overflow]
        reasons.append(f"fp16 range: {total_overflow} values beyond +-{FP16_MAX:.0f} (threshold "
                       f"{cfg.max_fp16_overflow}) in {names_list(where)}")
    return DriftReport(
        precision=reference.precision, rows=len(x), features=tuple(feats), ks_alpha_corrected=alpha,
        drifted_share=share, prediction_psi=pred_psi, prediction_shares=tuple(float(s) for s in pred_shares),
        reference_accuracy=reference.test_accuracy, accuracy=accuracy, labelled_rows=labelled,
        reference_agreement=reference.agreement_rate, agreement=agreement, fp16_overflow=int(total_overflow),
        drifted=bool(reasons), reasons=tuple(reasons), false_alarm_rate=cfg.false_alarm_rate,
        prediction_psi_cutoff=pred_cut, estimate=estimate, distinct_rows=len(distinct),
    )
