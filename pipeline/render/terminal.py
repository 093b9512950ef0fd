"""The terminal: the end-of-run summary (a table for people, one paragraph for logs) and the monitor's verdict."""
from __future__ import annotations

from rich.table import Table

from pipeline.core.drift import DriftReport
from pipeline.core.evaluate import EvalResult
from pipeline.core.gate import GateReport, GateVerdict
from pipeline.core.probe import ProbeResult
from pipeline.core.train import TrainResult


def summary_table(results: list[TrainResult], evals: list[EvalResult], report: GateReport) -> Table:
    table = Table(title="mpops: each precision against the fp32 baseline")
    for col in ("precision", "accuracy", "macro-F1", "agree", "ECE", "samples/s", "speedup", "peak MiB", "mem ratio",
                "wall s", "gate"):
        if col == "gate":  # the one column that may wrap: the figures stay whole
            table.add_column(col, max_width=40, overflow="fold")
        else:
            table.add_column(col, justify="left" if col == "precision" else "right", no_wrap=True, min_width=len(col))
    for r, e in zip(results, evals):
        v = report.verdict(r.precision)
        failed = [c.name for c in v.checks if not c.passed]
        more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
        # one check in the table keeps every column readable; the Gate line below lists them all
        verdict = "SELECTED" if r.precision == report.selected else ("pass" if v.passed else f"fail: {failed[0]}{more}")
        agree = f"{v.comparison.agreement:.4f}" if v.comparison else "-"
        table.add_row(r.precision, f"{e.accuracy:.4f}", f"{e.macro_f1:.4f}", agree, f"{e.ece:.4f}",
                      f"{r.samples_per_s:,.0f}", f"{v.speedup:.2f}x", f"{r.peak_memory_bytes / 2**20:.1f}",
                      f"{v.memory_ratio:.2f}x", f"{r.wall_s:.1f}", verdict)
    return table


def what_it_bought(report: GateReport) -> str:
    """Says plainly what each reduced precision gave on this machine, including a slowdown."""
    lines = []
    for v in report.verdicts:
        if v.precision == report.baseline:
            continue
        speed = (f"{v.speedup:.2f}x faster" if v.speedup >= 1.0 else f"{1 / v.speedup:.1f}x SLOWER") + " than fp32"
        lines.append(f"{v.precision}: {speed}, {v.memory_ratio:.2f}x the peak memory, accuracy {v.accuracy_delta:+.4f}")
    return "; ".join(lines)


def _power_text(v: GateVerdict) -> str:
    """The smallest accuracy drop the verdict's gate catches at the configured power, and what it lacks."""
    p = v.power
    short = f", short of the {p.accuracy.tolerance * 100:.3g}-point tolerance: {p.advice}" if p.short else ""
    return f"{p.sentence}{short}"


def what_it_could_miss(report: GateReport) -> str:
    return "; ".join(f"{v.precision}: {_power_text(v)}" for v in report.verdicts if v.power)


def ci_summary(results: tuple[TrainResult, ...], report: GateReport, probes: tuple[ProbeResult, ...],
               model_name: str, version: str, aliases: tuple[str, ...], champion_reason: str,
               hardware: str = "") -> str:
    """One paragraph for a CI log: what was trained, what the gate chose and why, what was registered."""
    dropped = [f"{r.precision} ({r.reason})" for r in probes if r.dropped]
    selected = report.verdict(report.selected)
    return (f"mpops trained {', '.join(r.precision for r in results)}"
            + (f"; the probe dropped {'; '.join(dropped)}" if dropped else "")
            + f". The gate selected {report.selected} ({selected.speedup:.2f}x fp32 training throughput, accuracy "
            f"{selected.accuracy:.4f}, {selected.accuracy_delta:+.4f} vs fp32, {selected.memory_ratio:.2f}x peak "
            f"memory){'; ' + _power_text(selected) if selected.power else ''}"
            + (f"; on {hardware}" if hardware else "")
            + f". Registered {model_name} version {version} as {', '.join(aliases)}; "
            f"{champion_reason}.")


def drifted_table(report: DriftReport, limit: int = 20) -> Table:
    table = Table(title=f"Drifted features ({len(report.drifted_features)} of {len(report.features)})")
    for col in ("feature", "PSI", "cut-off", "KS p-value", "reference mean", "batch mean", "beyond fp16"):
        table.add_column(col, justify="left" if col == "feature" else "right")
    for f in report.drifted_features[:limit]:
        table.add_row(f.name, f"{f.psi:.3f}", f"{f.psi_cutoff:.3f}", f"{f.ks_pvalue:.2g}", f"{f.reference_mean:.3g}",
                      f"{f.batch_mean:.3g}", str(f.fp16_overflow))
    return table


def drift_figures(report: DriftReport) -> str:
    acc = "n/a (no labels)" if report.accuracy is None else f"{report.accuracy:.4f}"
    agree = "n/a" if report.agreement is None else f"{report.agreement:.2%}"
    ref_agree = "n/a" if report.reference_agreement is None else f"{report.reference_agreement:.2%}"
    return (f"Drifted features {report.drifted_share:.1%}; prediction PSI {report.prediction_psi:.3f}; accuracy "
            f"{acc} (registered {report.reference_accuracy:.4f}); fp32-twin agreement {agree} (registered "
            f"{ref_agree}); values beyond fp16 range {report.fp16_overflow}\n{estimate_line(report)}")


def estimate_line(report: DriftReport) -> str:
    """The accuracy estimated without labels, and whether to believe it."""
    e = report.estimate
    if e is None:
        return "Estimated accuracy: n/a (the champion's reference has no calibrator; register a new version)"
    line = (f"Estimated accuracy without labels {e.expected:.4f} ({e.low:.4f}-{e.high:.4f}) vs registered "
            f"{e.reference:.4f}")
    if e.realised is not None:
        line += f"; realised {e.realised:.4f}, estimation error {e.error:+.4f}"
    return line + ("" if e.trusted else f"; not to be trusted: {e.why_untrusted}")
