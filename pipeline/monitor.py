"""Drift monitoring: reference statistics stored with the model at registration, a batch compared with them.

The reference is computed once, from the training split and the test-split predictions, and logged
into the model's run under `monitoring/` (with the fp32 twin's weights) before the version is
registered, so monitoring never needs the training data and a version either has it or does not exist.
"""
from __future__ import annotations

import json
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import MonitorConfig
from pipeline.errors import ConfigError, DataValidationError

FP16_MAX = 65504.0
REFERENCE_DIR = "monitoring"
REFERENCE_FILE = "reference.json"
TWIN_DIR = "fp32_twin"
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


# ---------------------------------------------------------------- statistics on arrays


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
        precision=precision, feature_columns=tuple(feature_columns), classes=tuple(_plain_value(c) for c in classes),
        features=tuple(feats), prediction_shares=tuple(float(s) for s in class_shares(test_pred, len(classes))),
        test_accuracy=float(test_accuracy), agreement_rate=agreement, train_rows=len(x), test_rows=len(test_pred),
    )


def _plain_value(v: Any) -> Any:
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
        return json.dumps({**asdict(self), "verdict": self.verdict}, indent=2, default=_plain)


def _names(feats, limit: int = 8) -> str:
    shown = ", ".join(feats[:limit])
    return shown + (f" and {len(feats) - limit} more" if len(feats) > limit else "")


def compare(x: np.ndarray, reference: ReferenceStats, cfg: MonitorConfig, champion_pred: np.ndarray,
            twin_pred: np.ndarray | None = None, y: np.ndarray | None = None) -> DriftReport:
    """Compare a batch with the reference. `x`: (rows, features) in reference.feature_columns order;
    predictions and `y` are class indices (`y` -1 where the label is missing or unknown)."""
    from scipy.stats import ks_2samp

    x = np.asarray(x, dtype=np.float64)
    n_feat = len(reference.features)
    alpha = cfg.ks_alpha / max(n_feat, 1)
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
    reasons = []
    drifted_names = [f.name for f in sorted(feats, key=lambda f: -f.psi) if f.drifted]
    share = len(drifted_names) / max(n_feat, 1)
    if share > cfg.max_drifted_share:
        reasons.append(f"feature drift: {len(drifted_names)} of {n_feat} features drifted ({share:.1%}, threshold "
                       f"{cfg.max_drifted_share:.1%}; PSI > {cfg.psi_threshold} and KS p < {alpha:.2g}): "
                       f"{_names(drifted_names)}")
    n_classes = len(reference.classes)
    pred_shares = class_shares(champion_pred, n_classes)
    pred_psi = psi(np.asarray(reference.prediction_shares), pred_shares)
    if pred_psi > cfg.max_prediction_psi:
        reasons.append(f"prediction drift: PSI of the predicted class shares {pred_psi:.3f} vs the test split, "
                       f"threshold {cfg.max_prediction_psi}")
    accuracy, labelled = None, 0
    if y is not None:
        y = np.asarray(y)
        known = y >= 0
        labelled = int(known.sum())
        if labelled:
            accuracy = float(np.mean(np.asarray(champion_pred)[known] == y[known]))
            drop = reference.test_accuracy - accuracy
            if drop > cfg.max_accuracy_drop:
                reasons.append(f"accuracy drop: {accuracy:.4f} on {labelled} labelled rows vs {reference.test_accuracy:.4f} "
                               f"registered ({-drop:+.4f}), threshold {cfg.max_accuracy_drop}")
    agreement = None
    if twin_pred is not None and reference.agreement_rate is not None:
        agreement = float(np.mean(np.asarray(champion_pred) == np.asarray(twin_pred)))
        drop = reference.agreement_rate - agreement
        if drop > cfg.max_agreement_drop:
            reasons.append(f"precision drift: the {reference.precision} champion agrees with its fp32 twin on "
                           f"{agreement:.2%} of rows vs {reference.agreement_rate:.2%} at registration "
                           f"({-drop:+.2%}), threshold {cfg.max_agreement_drop:.2%}")
    total_overflow = int(overflow.sum())
    if total_overflow > cfg.max_fp16_overflow:
        where = [f"{f.name} ({f.fp16_overflow})" for f in sorted(feats, key=lambda f: -f.fp16_overflow) if f.fp16_overflow]
        reasons.append(f"fp16 range: {total_overflow} values beyond +-{FP16_MAX:.0f} (threshold "
                       f"{cfg.max_fp16_overflow}) in {_names(where)}")
    return DriftReport(
        precision=reference.precision, rows=len(x), features=tuple(feats), ks_alpha_corrected=alpha,
        drifted_share=share, prediction_psi=pred_psi, prediction_shares=tuple(float(s) for s in pred_shares),
        reference_accuracy=reference.test_accuracy, accuracy=accuracy, labelled_rows=labelled,
        reference_agreement=reference.agreement_rate, agreement=agreement, fp16_overflow=total_overflow,
        drifted=bool(reasons), reasons=tuple(reasons),
    )


# ---------------------------------------------------------------- the batch


@dataclass(frozen=True)
class Batch:
    path: str
    x: np.ndarray  # (rows, features) float64, in the reference's feature order
    labels: pd.Series | None  # raw label values, when the batch has the label column


def load_batch(path: str, feature_columns: tuple[str, ...], label_column: str) -> Batch:
    """Unreadable, empty, incomplete, non-numeric or non-finite feature data is a DataValidationError (exit 3)."""
    from pipeline.data import load_dataset

    frame = load_dataset(path, label_column=label_column, require_label=False).frame
    missing = [c for c in feature_columns if c not in frame.columns]
    if missing:
        raise DataValidationError(f"monitor: batch {path} lacks {len(missing)} feature column(s) the model needs: "
                                  f"{_names(missing, 5)}")
    feats = frame[list(feature_columns)]
    bad = [c for c in feature_columns if not pd.api.types.is_numeric_dtype(feats[c])
           or pd.api.types.is_bool_dtype(feats[c])]
    if bad:
        example = feats[bad[0]].iloc[int(pd.to_numeric(feats[bad[0]], errors="coerce").isna().to_numpy().argmax())]
        raise DataValidationError(f"monitor: batch {path} has non-numeric values in {_names(bad, 5)} "
                                  f"(e.g. {bad[0]}={example!r}); feature columns must be numbers")
    x = feats.to_numpy(dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.all():
        cols = [feature_columns[j] for j in np.flatnonzero(~finite.all(axis=0))]
        raise DataValidationError(f"monitor: batch {path} has {int((~finite).sum())} missing or infinite feature "
                                  f"values, in {_names(cols, 5)}; fix or drop those rows")
    labels = frame[label_column] if label_column in frame.columns else None
    return Batch(str(path), x, labels)


def label_indices(labels: pd.Series, classes: tuple[Any, ...]) -> np.ndarray:
    """Class index of each label; -1 for a missing label or one the model never saw."""
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        values = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=np.float64)
        index = {float(c): i for i, c in enumerate(classes)}
        return np.array([index.get(v, -1) if not math.isnan(v) else -1 for v in values], dtype=np.int64)
    index = {str(c): i for i, c in enumerate(classes)}
    return np.array([index.get(str(v), -1) if pd.notna(v) else -1 for v in labels], dtype=np.int64)


# ---------------------------------------------------------------- MLflow: the reference and the champion


def log_reference(run_id: str, cfg: MonitorConfig, result, ev, split, fp32_result=None) -> ReferenceStats:
    """Compute the reference and log it, with the fp32 twin's weights, into the model's run under monitoring/.

    `result`/`ev`: the selected model's TrainResult and EvalResult; `fp32_result`: the fp32 model of the same
    run (the selected model itself when it is fp32)."""
    import torch
    from mlflow import MlflowClient

    from pipeline.evaluate import predict_indices

    twin = fp32_result if fp32_result is not None else (result if result.precision == "fp32" else None)
    twin_pred = predict_indices(twin.model, split.x_test, twin.policy) if twin is not None else None
    ref = reference_stats(split.x_train, split.feature_columns, split.classes, result.precision, ev.predictions,
                          ev.accuracy, twin_pred, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / REFERENCE_FILE).write_text(ref.to_json())
        if twin is not None:
            folder = Path(tmp) / TWIN_DIR
            folder.mkdir()
            torch.save({k: v.cpu() for k, v in twin.model.state_dict().items()}, folder / "weights.pt")
            # The meta registry._log_model writes for a served model, so the twin loads the same way.
            meta = {"precision": twin.precision, "spec": asdict(twin.spec),
                    "feature_columns": list(split.feature_columns), "classes": list(ref.classes)}
            (folder / "meta.json").write_text(json.dumps(meta, default=_plain))
        MlflowClient().log_artifacts(run_id, tmp, REFERENCE_DIR)
    return ref


@dataclass(frozen=True)
class Champion:
    model_uri: str
    model_name: str | None
    version: str | None
    run_id: str
    reference: ReferenceStats
    model: Any  # mlflow.pyfunc.PyFuncModel: predicts labels in the champion's precision
    twin: Any  # torch.nn.Module in fp32, or None when no twin was stored
    twin_policy: Any


def load_champion(model_uri: str) -> Champion:
    import mlflow
    import torch
    from mlflow import MlflowClient

    from pipeline.models import ModelSpec, build_model
    from pipeline.precision import resolve_device, serving_policy

    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except Exception as e:  # MLflow raises several types for a missing model or alias
        raise ConfigError(f"monitor: cannot load {model_uri} ({str(e).splitlines()[0]}); "
                         "register a model with `mpops run` first or pass --model-uri") from None
    name = version = None
    if model_uri.startswith("models:/"):
        from mlflow.store.artifact.utils.models import get_model_name_and_version

        try:
            name, version = get_model_name_and_version(MlflowClient(), model_uri)
        except Exception:  # e.g. models:/m-<id>, a logged model outside the registry: no version to report
            name = version = None
    run_id = model.metadata.run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=REFERENCE_DIR, dst_path=tmp))
            text = (folder / REFERENCE_FILE).read_text()
        except Exception:
            raise ConfigError(f"monitor: {model_uri} (run {run_id}) has no drift reference under {REFERENCE_DIR}/; it was "
                             "registered before drift monitoring existed: register a new version with `mpops run`"
                             ) from None
        reference = ReferenceStats.from_json(text)
        twin = policy = None
        if (folder / TWIN_DIR / "weights.pt").is_file():
            meta = json.loads((folder / TWIN_DIR / "meta.json").read_text())
            policy = serving_policy("fp32", resolve_device("auto"))
            twin = build_model(ModelSpec(**meta["spec"]))
            twin.load_state_dict(torch.load(folder / TWIN_DIR / "weights.pt", map_location="cpu", weights_only=True))
            twin = policy.convert_module(twin).eval()
    return Champion(model_uri, name, str(version) if version is not None else None, run_id, reference, model, twin,
                    policy)


def monitor_batch(champion: Champion, batch: Batch, cfg: MonitorConfig) -> DriftReport:
    """Score the batch with the champion (in its precision) and its fp32 twin, and compare with the reference."""
    from pipeline.evaluate import predict_indices

    ref = champion.reference
    frame = pd.DataFrame(batch.x, columns=list(ref.feature_columns))
    labels = champion.model.predict(frame)
    index = {c: i for i, c in enumerate(ref.classes)}
    champion_pred = np.array([index.get(_plain_value(v), -1) for v in labels], dtype=np.int64)
    twin_pred = predict_indices(champion.twin, batch.x.astype(np.float32), champion.twin_policy) \
        if champion.twin is not None else None
    y = label_indices(batch.labels, ref.classes) if batch.labels is not None else None
    return compare(batch.x, ref, cfg, champion_pred, twin_pred, y)


# ---------------------------------------------------------------- the report


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e-3 and v else f"{v:.4f}"


def feature_table(report: DriftReport) -> pd.DataFrame:
    rows = [{"feature": f.name, "psi": f.psi, "ks_statistic": f.ks_statistic, "ks_pvalue": f.ks_pvalue,
             "reference_mean": f.reference_mean, "batch_mean": f.batch_mean, "fp16_overflow": f.fp16_overflow,
             "drifted": f.drifted} for f in report.features]
    return pd.DataFrame(rows).sort_values(["drifted", "psi"], ascending=[False, False], kind="stable")


def _markdown(report: DriftReport, batch_path: str, model_uri: str, table: pd.DataFrame) -> str:
    lines = [f"# Drift report: {batch_path}", "", f"Model: `{model_uri}` ({report.precision}); {report.rows} rows.", "",
             f"**Verdict: {'DRIFT' if report.drifted else 'no drift'}**", ""]
    lines += [f"- {r}" for r in report.reasons] or [f"- {report.verdict}"]
    lines += ["", "| check | batch | reference |", "|---|---|---|",
              f"| drifted features | {report.drifted_share:.1%} | - |",
              f"| prediction PSI | {report.prediction_psi:.4f} | 0 |",
              f"| accuracy | {'n/a (no labels)' if report.accuracy is None else f'{report.accuracy:.4f}'} "
              f"| {report.reference_accuracy:.4f} |",
              f"| fp32-twin agreement | {'n/a' if report.agreement is None else f'{report.agreement:.2%}'} | "
              f"{'n/a' if report.reference_agreement is None else f'{report.reference_agreement:.2%}'} |",
              f"| values beyond fp16 range | {report.fp16_overflow} | - |", "",
              f"KS alpha after Bonferroni correction: {report.ks_alpha_corrected:.3g}.", "",
              "| feature | PSI | KS statistic | KS p-value | reference mean | batch mean | fp16 overflow | drifted |",
              "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples(index=False):
        lines.append(f"| {r.feature} | {r.psi:.4f} | {r.ks_statistic:.4f} | {_fmt(r.ks_pvalue)} | "
                     f"{r.reference_mean:.4g} | {r.batch_mean:.4g} | {r.fp16_overflow} | {'yes' if r.drifted else ''} |")
    return "\n".join(lines) + "\n"


def plot_features(report: DriftReport, reference: ReferenceStats, batch: Batch, folder: Path, top_k: int) -> list[Path]:
    """One PNG per drifted feature, per feature with values beyond fp16 range, plus the top_k others by PSI:
    reference sample vs batch histograms. Not all features: 64 plots cost seconds and bury the ones that matter."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the report is written on servers and in CI
    import matplotlib.pyplot as plt

    drifted = [f.name for f in report.drifted_features]
    drifted += [f.name for f in report.features if f.fp16_overflow and not f.drifted]
    rest = [f.name for f in sorted(report.features, key=lambda f: -f.psi) if f.name not in drifted][:top_k]
    index = {n: j for j, n in enumerate(reference.feature_columns)}
    by_name = {f.name: f for f in report.features}
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in drifted + rest:
        ref = np.asarray(reference.features[index[name]].sample)
        cur = batch.x[:, index[name]]
        lo, hi = float(min(ref.min(), cur.min())), float(max(ref.max(), cur.max()))
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 31)
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=80)
        ax.hist(ref, bins=bins, density=True, alpha=0.55, label="reference (training)")
        ax.hist(cur, bins=bins, density=True, alpha=0.55, label="batch")
        f = by_name[name]
        ax.set_title(f"{name}: PSI {f.psi:.3f}, KS p {_fmt(f.ks_pvalue)}" + (" (drifted)" if f.drifted else ""),
                     fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = folder / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(report: DriftReport, reference: ReferenceStats, batch: Batch, model_uri: str, folder: Path,
                 top_k: int) -> Path:
    """report.json, report.csv, report.md and plots/ in `folder` (replacing the previous report's plots)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "plots").is_dir():
        shutil.rmtree(folder / "plots")
    table = feature_table(report)
    table.to_csv(folder / "report.csv", index=False)
    (folder / "report.md").write_text(_markdown(report, batch.path, model_uri, table))
    (folder / "report.json").write_text(report.to_json())
    plot_features(report, reference, batch, folder / "plots", top_k)
    return folder


def log_report(report: DriftReport, champion: Champion, batch: Batch, folder: Path, cfg: MonitorConfig,
               artifact_location: str | None) -> str:
    """One run in the monitoring experiment: metrics, the verdict and its reasons as tags, the report folder."""
    from pipeline import registry

    run_id = registry.start_run(cfg.experiment, "monitor", artifact_location)
    ok = False
    try:
        tags = {"monitor.drifted": str(report.drifted).lower(), "monitor.reason": report.verdict[:5000],
                "monitor.model_uri": champion.model_uri, "monitor.model_run_id": champion.run_id,
                "monitor.precision": report.precision, "monitor.batch": batch.path[:5000],
                "monitor.drifted_features": ",".join(f.name for f in report.drifted_features)[:5000] or "none"}
        if champion.version:
            tags.update({"monitor.model_name": champion.model_name, "monitor.model_version": champion.version})
        metrics = report.metrics()
        items = list(metrics.items())
        for i in range(0, len(items), 900):  # MLflow takes at most 1000 metrics a batch
            registry.log_values(run_id, metrics=dict(items[i:i + 900]), tags=tags if i == 0 else None)
        registry.log_artifacts(run_id, folder, "drift")
        ok = True
    finally:
        registry.end_run(run_id, ok)
    return run_id


def tag_retrain(run_id: str, what: str) -> None:
    from pipeline import registry

    registry.log_values(run_id, tags={"monitor.retrain": what[:5000]})
