"""Markdown for people: the gate report, the model card, the sweep's trade-off table, the noise floor."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.core.evaluate import EvalResult
from pipeline.core.gate import GateReport, GateVerdict
from pipeline.core.gate_checks import SPECS
from pipeline.core.provenance import Provenance
from pipeline.core.sweep import NoiseRow, SweepPoint


def _fmt(x: float) -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return "n/a"
    return f"{x:.4g}"


def verdict_table(v: GateVerdict) -> str:
    """Every check with its value, threshold, verdict and, where it has one, the smallest drop it detects."""
    detects = f"detects ({v.power.power:.0%} of the time)" if v.power else "detects"
    rows = [f"| group | check | value | threshold | {detects} | verdict |", "|---|---|---:|---:|---:|---|"]
    for c in v.checks:
        figure = v.power.figure(c.key) if v.power else None
        if not c.passed:
            verdict = f"**FAIL**{': ' + c.note if c.note else ''}"
        else:
            verdict = f"pass; **warning**: {c.note}" if c.note else "pass"
        rows.append(f"| {c.group} | {c.name} | {_fmt(c.value)} | {c.op} {_fmt(c.threshold)} | "
                    f"{'>= ' + _fmt(figure.drop) if figure else ''} | {verdict} |")
    return "\n".join(rows)


# Why some checks carry no detectable effect (pipeline/core/power.py says more).
NO_FIGURE = ("No figure for the accuracy interval bound (a non-inferiority bound: it fails whatever it cannot "
             "clear, so on a small test set it also fails candidates as good as fp32), macro-F1 and macro "
             "precision (they depend on which class lost rows go to, not on how many), ECE (binned absolute gaps, "
             "not a mean over rows) and FGSM. Point-estimate checks catch a change of exactly their tolerance about "
             "half the time at any size: their figure is shown, not held against the tolerance.")


def power_markdown(v: GateVerdict) -> str:
    """What the gate could have missed for one candidate: the figures and the test size to aim for."""
    p = v.power
    acc = p.accuracy
    rows = ["| check | detects a drop of | tolerance | rows | how |", "|---|---:|---:|---:|---|"]
    rows += [f"| {SPECS[f.key].label} | >= {_fmt(f.drop)} | {_fmt(f.tolerance)} | {f.rows} | {f.basis} |"
             for f in p.figures]
    tolerance = f"{acc.tolerance * 100:.3g}-point tolerance"
    verdict = f"**Too small to trust**: that is more than the {tolerance}." if p.short else f"That is within the {tolerance}."
    return "\n".join([f"What this test set could have missed: {p.sentence} ({acc.basis}). {verdict} "
                      f"Recommended test size: {p.advice}.", "", *rows, "", NO_FIGURE])


def _flips(v: GateVerdict, classes: tuple[str, ...]) -> str:
    cmp = v.comparison
    pairs = [(i, j, n) for i, row in enumerate(cmp.flips) for j, n in enumerate(row) if i != j and n]
    if not pairs:
        return "No test row changed its predicted class."
    name = (lambda i: classes[i] if i < len(classes) else str(i))
    return "Flips (fp32 class -> candidate class: rows): " + ", ".join(
        f"{name(i)}->{name(j)}: {n}" for i, j, n in sorted(pairs, key=lambda t: -t[2]))


def latency_table(verdicts: tuple[GateVerdict, ...]) -> str:
    rows = ["| precision | p50 ms b1 | p95 ms b1 | p50 ms b256 | p95 ms b256 | samples/s b256 |",
            "|---|---:|---:|---:|---:|---:|"]
    for v in verdicts:
        lat = v.latency
        if lat is None:
            rows.append(f"| {v.precision} | not measured | | | | |")
        else:
            rows.append(f"| {v.precision} | {lat.p50_ms_batch1:.3f} | {lat.p95_ms_batch1:.3f} | "
                        f"{lat.p50_ms_batch256:.3f} | {lat.p95_ms_batch256:.3f} | {lat.samples_per_s_batch256:,.0f} |")
    return "\n".join(rows)


def gate_markdown(report: GateReport) -> str:
    head = [f"# Gate report: candidates against {report.baseline}", "",
            f"**Selected: {report.selected or 'none'}** (policy: {report.selection}). {report.reason}", "",
            "| precision | accuracy | vs fp32 | 95% CI of delta | McNemar p | agreement | speedup | memory | "
            "latency p50 b256 | verdict |", "|---|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for v in report.verdicts:
        c = v.comparison
        ci = f"[{c.accuracy_ci[0]:+.4f}, {c.accuracy_ci[1]:+.4f}]" if c else "-"
        head.append(f"| {v.precision} | {v.accuracy:.4f} | {v.accuracy_delta:+.4f} | {ci} | "
                    f"{_fmt(c.mcnemar_p) if c else '-'} | {_fmt(c.agreement) if c else '-'} | {v.speedup:.2f}x | "
                    f"{_fmt(v.memory_ratio)}x | {_fmt(v.latency_ratio)}x | {'pass' if v.passed else 'FAIL'} |")
    body = ["", "Inference latency, measured the same way for every precision:", "", latency_table(report.verdicts)]
    for v in report.verdicts:
        body += ["", f"## {v.precision}: {'passed' if v.passed else 'failed'}", "", verdict_table(v)]
        if v.comparison:
            body += ["", _flips(v, report.classes)]
        if v.power:
            body += ["", power_markdown(v)]
    return "\n".join(head + body) + "\n"


@dataclass(frozen=True)
class CardFacts:
    model_name: str
    precision: str
    device: str
    torch_version: str
    data_md5: str
    git_commit: str
    rows: int
    features: int
    classes: tuple[str, ...]
    validation_summary: str
    parent_run_id: str
    pinning: str = "as pinned by data.dvc"  # or why not


def model_card(f: CardFacts, report: GateReport) -> str:
    v = report.verdict(f.precision)
    return "\n".join([
        f"# Model card: {f.model_name} ({f.precision})", "",
        "## Model", "",
        f"- Precision: **{f.precision}**, trained and served on {f.device}, torch {f.torch_version}.",
        f"- Classifier over {f.features} numeric feature columns into {len(f.classes)} classes "
        f"({', '.join(f.classes[:20])}).",
        f"- Pipeline run: {f.parent_run_id}; code: git {f.git_commit}.", "",
        "## Data", "",
        f"- {f.rows} rows, DVC md5 `{f.data_md5}` ({f.pinning}).",
        f"- Validation: {f.validation_summary}", "",
        "## Gate against fp32", "",
        f"Selected by policy `{report.selection}`: {report.reason}", "",
        verdict_table(v), "",
        *([f"What the gate could have missed: {v.power.sentence}.", ""] if v.power else []),
        "## Intended use", "",
        "- Scoring rows with the same feature columns and value ranges as the training data, through "
        "`mlflow.pyfunc.load_model(...).predict(frame)` or `mpops predict`.",
        "- The precision was chosen on the machine that trained it; on other hardware the speed figures "
        "do not carry over: re-run the gate there.", "",
        "## Limits", "",
        "- Quality is measured on one held-out split; the confidence interval in the gate table says how "
        "far that figure can be trusted.",
        "- Reduced precision can change predictions near decision boundaries (see agreement and flips) "
        "and robustness to perturbations (see the FGSM row); watch both with `mpops monitor`.",
        "- Inputs far outside the training range, especially beyond fp16's 65504, are outside what was tested.",
        "",
    ])


def version_description(precision: str, ev: EvalResult, report: GateReport, parent_run_id: str, run_url: str,
                        prov: Provenance) -> str:
    """The registered version's description: the gate's verdict table and a link to the pipeline run."""
    v = report.verdict(precision)
    power = f"\n\nPower: {v.power.sentence}." if v.power else ""
    warnings = "".join(f"\n\n**Warning**: {w}" for w in v.warnings)
    return (f"{precision} model selected by the mpops gate; parent run [{parent_run_id}]({run_url}).\n\n"
            f"Gate ({report.selection}): {report.reason}{power}{warnings}\n\nTest accuracy {ev.accuracy:.4f}, "
            f"macro-F1 {ev.macro_f1:.4f}, ECE {ev.ece:.4f}; data md5 {prov.data_md5}"
            f"{'' if prov.data_is_pinned else ' (not pinned by data.dvc)'}; git "
            f"{prov.git_commit[:12]}.\n\n{verdict_table(v)}\n\n"
            f"Full report: gate/report.md and model_card.md in the model's run.")


def tradeoff_markdown(points: list[SweepPoint], picks: dict[int, str | None],
                      title: str = "Precision sweep: accuracy against throughput") -> str:
    rows = ["| precision | batch | accuracy | macro-F1 | ECE | samples/s | speedup | peak MiB | Pareto | gate |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for p in sorted(points, key=lambda p: (p.batch_size, -p.samples_per_s)):
        gate = "pass" if p.gate_passed else f"fail: {p.gate_reason[:120]}"
        rows.append(f"| {p.precision} | {p.batch_size} | {p.accuracy:.4f} | {p.macro_f1:.4f} | {p.ece:.4f} | "
                    f"{p.samples_per_s:,.0f} | {p.speedup:.2f}x | {p.peak_memory_mb:.1f} | "
                    f"{'yes' if p.pareto else ''} | {gate} |")
    picked = "; ".join(f"batch {b}: {p or 'nothing passed'}" for b, p in picks.items())
    return f"# {title}\n\n" + "\n".join(rows) + f"\n\nThe gate picks: {picked}.\n"


def noise_markdown(rows: list[NoiseRow], seeds: list[int], accuracies: list[float]) -> str:
    acc = np.array(accuracies)
    lines = [f"# Noise floor: fp32 trained with seeds {', '.join(map(str, seeds))}", "",
             f"Test accuracy per seed: {', '.join(f'{a:.4f}' for a in acc)} (mean {acc.mean():.4f}, "
             f"std {acc.std():.4f}, range {acc.max() - acc.min():.4f}).", "",
             f"Each figure compares seeds {', '.join(map(str, seeds[1:]))} with seed {seeds[0]}, exactly as the "
             "gate compares a candidate with fp32.", "",
             "| gated figure | config key | configured | worst seen | std | suggested | tighter than the noise? |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.config_key} | {r.op} {r.configured:.4g} | {r.worst:.4g} | {r.spread:.4g} | "
                     f"{r.op} {r.suggested:.4g} | {'**yes**: fp32 itself can fail it' if r.tighter_than_noise else 'no'} |")
    return "\n".join(lines) + "\n"
