"""Drift statistics: the reference computed at registration, and a batch compared with it.

The reference is computed once, from the training split and the test-split predictions; the
tracking adapter stores it with the model (pipeline.tracking.reference), so monitoring never
needs the training data. Pure numpy and scipy.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import ks_2samp

from pipeline.core import strict_json
from pipeline.core.config import MonitorConfig

FP16_MAX = 65504.0
# Empty bins would make PSI infinite (ln 0); the usual floor, small against a 10-bin share of 0.1.
PSI_FLOOR = 1e-4
REFERENCE_SEED = 0


@dataclass(frozen=True)
class FeatureReference:
    name: str
    # Bin i of a value x is searchsorted(edges, x, side="left"): x <= edges[0] (below the training
    # minimum), x == minimum, the quantile bins, and x > maximum, so values outside the training range
    # land in bins whose reference share is 0 and count fully towards PSI.
    edges: tuple[float, ...]
    shares: tuple[float, ...]  # len(edges) + 1, training-split share of each bin
    sample: tuple[float, ...]  # training values for the KS test (a row sample, the same rows for every feature)
    mean: float
    fp16_overflow: int  # training values with |x| > 65504


@dataclass(frozen=True)
class ReferenceStats:
    precision: str  # the champion's precision
    feature_columns: tuple[str, ...]
    classes: tuple[Any, ...]
    features: tuple[FeatureReference, ...]
    prediction_shares: tuple[float, ...]  # champion's predicted class shares on the test split
    test_accuracy: float
    agreement_rate: float | None  # champion vs fp32 twin on the test split; None without a twin
    train_rows: int
    test_rows: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=_plain)

    @classmethod
    def from_json(cls, text: str) -> "ReferenceStats":
        raw = json.loads(text)
        feats = tuple(FeatureReference(f["name"], tuple(f["edges"]), tuple(f["shares"]), tuple(f["sample"]),
                                       f["mean"], f["fp16_overflow"]) for f in raw.pop("features"))
        return cls(features=feats, feature_columns=tuple(raw.pop("feature_columns")),
                   classes=tuple(raw.pop("classes")), prediction_shares=tuple(raw.pop("prediction_shares")), **raw)


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Quantile edges of one training feature; duplicates (discrete or constant features) collapse."""
    values = np.asarray(values, dtype=np.float64)
    q = np.quantile(values, np.linspace(0.0, 1.0, bins + 1))
    return np.unique(np.concatenate([[np.nextafter(q[0], -np.inf)], q]))


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(np.asarray(edges), np.asarray(values, dtype=np.float64), side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    return counts / max(len(values), 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def class_shares(indices: np.ndarray, n_classes: int) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64)
    idx = idx[(idx >= 0) & (idx < n_classes)]
    return np.bincount(idx, minlength=n_classes).astype(np.float64) / max(len(indices), 1)


def fp16_overflow(x: np.ndarray) -> np.ndarray:
    """Per column: values fp16 cannot hold (they become inf in an fp16 model)."""
    return (np.abs(np.asarray(x, dtype=np.float64)) > FP16_MAX).sum(axis=0).astype(np.int64)


def reference_stats(x_train: np.ndarray, feature_columns: tuple[str, ...], classes: tuple[Any, ...],
                    precision: str, test_pred: np.ndarray, test_accuracy: float,
                    twin_pred: np.ndarray | None, cfg: MonitorConfig) -> ReferenceStats:
    """`test_pred`/`twin_pred`: class indices the champion and its fp32 twin predict on the test split."""
    x = np.asarray(x_train, dtype=np.float64)
    rng = np.random.default_rng(REFERENCE_SEED)
    rows = np.sort(rng.choice(len(x), size=min(len(x), cfg.reference_sample), replace=False))
    overflow = fp16_overflow(x)
    feats = []
    for j, name in enumerate(feature_columns):
        edges = bin_edges(x[:, j], cfg.psi_bins)
        feats.append(FeatureReference(name, tuple(float(e) for e in edges),
                                      tuple(float(s) for s in bin_shares(x[:, j], edges)),
                                      tuple(float(v) for v in x[rows, j]), float(x[:, j].mean()), int(overflow[j])))
    agreement = None if twin_pred is None else float(np.mean(np.asarray(test_pred) == np.asarray(twin_pred)))
    return ReferenceStats(
        precision=precision, feature_columns=tuple(feature_columns), classes=tuple(plain_value(c) for c in classes),
        features=tuple(feats), prediction_shares=tuple(float(s) for s in class_shares(test_pred, len(classes))),
        test_accuracy=float(test_accuracy), agreement_rate=agreement, train_rows=len(x), test_rows=len(test_pred),
    )


def plain_value(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


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
            "monitor.rows": self.rows, "monitor.drifted": float(self.drifted),
            "monitor.drifted_share": self.drifted_share, "monitor.drifted_features": len(self.drifted_features),
            "monitor.prediction_psi": self.prediction_psi, "monitor.fp16_overflow": self.fp16_overflow,
            "monitor.reference_accuracy": self.reference_accuracy,
        }
        if self.accuracy is not None:
            m["monitor.accuracy"] = self.accuracy
            m["monitor.accuracy_drop"] = self.reference_accuracy - self.accuracy
        if self.agreement is not None and self.reference_agreement is not None:
            m["monitor.agreement"] = self.agreement
            m["monitor.reference_agreement"] = self.reference_agreement
            m["monitor.agreement_drop"] = self.reference_agreement - self.agreement
        for f in self.features:
            m[f"monitor.psi.{f.name}"] = f.psi
            m[f"monitor.ks_statistic.{f.name}"] = f.ks_statistic
            m[f"monitor.ks_pvalue.{f.name}"] = f.ks_pvalue
            if f.fp16_overflow:
                m[f"monitor.fp16_overflow.{f.name}"] = f.fp16_overflow
        return m

    def to_json(self) -> str:
        return strict_json.dumps({**asdict(self), "verdict": self.verdict}, indent=2)


def names_list(feats, limit: int = 8) -> str:
    shown = ", ".join(feats[:limit])
    return shown + (f" and {len(feats) - limit} more" if len(feats) > limit else "")


def _feature_drift(x: np.ndarray, reference: ReferenceStats, cfg: MonitorConfig, alpha: float
                   ) -> list[FeatureDrift]:
    overflow = fp16_overflow(x)
    feats = []
    for j, ref in enumerate(reference.features):
        col = x[:, j]
        ks = ks_2samp(np.asarray(ref.sample), col)
        p = psi(np.asarray(ref.shares), bin_shares(col, np.asarray(ref.edges)))
        # Both must agree: PSI alone is noisy on small batches, KS alone flags trivial shifts on large ones.
        drifted = p > cfg.psi_threshold and float(ks.pvalue) < alpha
        feats.append(FeatureDrift(ref.name, p, float(ks.statistic), float(ks.pvalue), ref.mean, float(col.mean()),
                                  int(overflow[j]), bool(drifted)))
    return feats


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
            twin_pred: np.ndarray | None = None, y: np.ndarray | None = None) -> DriftReport:
    """Compare a batch with the reference. `x`: (rows, features) in reference.feature_columns order;
    predictions and `y` are class indices (`y` -1 where the label is missing or unknown)."""
    x = np.asarray(x, dtype=np.float64)
    n_feat = len(reference.features)
    alpha = cfg.ks_alpha / max(n_feat, 1)
    feats = _feature_drift(x, reference, cfg, alpha)
    reasons = []
    drifted_names = [f.name for f in sorted(feats, key=lambda f: -f.psi) if f.drifted]
    share = len(drifted_names) / max(n_feat, 1)
    if share > cfg.max_drifted_share:
        reasons.append(f"feature drift: {len(drifted_names)} of {n_feat} features drifted ({share:.1%}, threshold "
                       f"{cfg.max_drifted_share:.1%}; PSI > {cfg.psi_threshold} and KS p < {alpha:.2g}): "
                       f"{names_list(drifted_names)}")
    pred_shares = class_shares(champion_pred, len(reference.classes))
    pred_psi = psi(np.asarray(reference.prediction_shares), pred_shares)
    if pred_psi > cfg.max_prediction_psi:
        reasons.append(f"prediction drift: PSI of the predicted class shares {pred_psi:.3f} vs the test split, "
                       f"threshold {cfg.max_prediction_psi}")
    accuracy, labelled, why = _accuracy(reference, cfg, champion_pred, y)
    agreement, why_agree = _agreement(reference, cfg, champion_pred, twin_pred)
    reasons += [r for r in (why, why_agree) if r]
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
        drifted=bool(reasons), reasons=tuple(reasons),
    )
