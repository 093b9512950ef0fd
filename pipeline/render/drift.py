"""The drift report on disk: report.csv (per feature), report.md, report.json and per-feature plots."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.batch import Batch
from pipeline.core.drift import DriftReport, ReferenceStats
from pipeline.render.plots import pyplot
from pipeline.render.terminal import estimate_line


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e-3 and v else f"{v:.4f}"


def feature_table(report: DriftReport) -> pd.DataFrame:
    rows = [{"feature": f.name, "psi": f.psi, "psi_cutoff": f.psi_cutoff, "ks_statistic": f.ks_statistic, "ks_pvalue": f.ks_pvalue,
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
              f"| values beyond fp16 range | {report.fp16_overflow} | - |", "", estimate_line(report), "",
              f"PSI cut-offs derived from the reference for {report.rows} rows at a false-alarm rate of "
              f"{report.false_alarm_rate:g}; prediction PSI cut-off {report.prediction_psi_cutoff:.4f}. "
              f"KS alpha after Bonferroni correction: {report.ks_alpha_corrected:.3g}.", "",
              "| feature | PSI | PSI cut-off | KS statistic | KS p-value | reference mean | batch mean | fp16 overflow "
              "| drifted |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples(index=False):
        lines.append(f"| {r.feature} | {r.psi:.4f} | {r.psi_cutoff:.4f} | {r.ks_statistic:.4f} | {_fmt(r.ks_pvalue)} | "
                     f"{r.reference_mean:.4g} | {r.batch_mean:.4g} | {r.fp16_overflow} | {'yes' if r.drifted else ''} |")
    return "\n".join(lines) + "\n"


def plot_features(report: DriftReport, reference: ReferenceStats, batch: Batch, folder: Path, top_k: int) -> list[Path]:
    """One PNG per drifted feature, per feature with values beyond fp16 range, plus the top_k others by PSI:
    reference sample vs batch histograms. Not all features: 64 plots cost seconds and bury the ones that matter."""
    plt = pyplot()
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
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "plots").is_dir():
        shutil.rmtree(folder / "plots")
    table = feature_table(report)
    table.to_csv(folder / "report.csv", index=False)
    (folder / "report.md").write_text(_markdown(report, batch.path, model_uri, table))
    (folder / "report.json").write_text(report.to_json())
    plot_features(report, reference, batch, folder / "plots", top_k)
    return folder
