"""`mpops sweep` and `mpops noise-floor`: experiments over precisions and seeds. Nothing is registered."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.common import prepare_process, resolve
from flows.training import load_data, provenance, train_precision, validated_split
from pipeline.core.config import Config
from pipeline.core.config_load import override_pairs
from pipeline.core.device import available_precisions, resolve_device
from pipeline.core.gate import CandidateMetrics, GateReport, gate
from pipeline.core.sweep import NoiseRow, SweepPoint, mark_pareto, noise_rows, sweep_points
from pipeline.render.markdown import gate_markdown, noise_markdown, tradeoff_markdown
from pipeline.render.plots import pareto_plot
from pipeline.tracking import runs
from pipeline.tracking.store import artifact_location, setup_tracking


@dataclass(frozen=True)
class SweepOutcome:
    parent_run_id: str
    points: tuple[SweepPoint, ...]
    picks: tuple[tuple[int, str | None], ...]  # (batch size, precision the gate would pick)
    reports: tuple[GateReport, ...]
    table: str  # Markdown
    plot: Path


@dataclass(frozen=True)
class NoiseOutcome:
    parent_run_id: str
    seeds: tuple[int, ...]
    accuracies: tuple[float, ...]
    rows: tuple[NoiseRow, ...]
    report: str  # Markdown


def _batch(cfg: Config, sp, precisions: tuple[str, ...], b: int, parent_id: str, root: Path):
    """Every precision at batch size `b`, gated as `mpops run` would."""
    bcfg = replace(cfg, train=replace(cfg.train, batch_size=b))
    trained = [train_precision(bcfg, sp, p, parent_id, root, run_name=f"{p} b{b}") for p in precisions]
    report = gate([CandidateMetrics.of(t.result, t.eval) for t in trained], sp.y_test, cfg.gate, classes=sp.classes)
    return sweep_points(b, [t.result for t in trained], [t.eval for t in trained], report), report


@flow(name="mpops-sweep", log_prints=True)
def sweep_flow(config: str | None = None, data: str | None = None,
               overrides: dict[str, Any] | list[str] | None = None) -> SweepOutcome:
    prepare_process()
    root, cfg = resolve(config, data, None, overrides)
    setup_tracking(root, cfg.registry.unreachable_after_s)
    precisions = cfg.sweep.precisions or available_precisions(resolve_device(cfg.train.device))
    batch_sizes = cfg.sweep.batch_sizes or (cfg.train.batch_size,)
    ds = load_data(cfg)
    prov = provenance(cfg, root, ds)
    tags = {**prov.as_tags(), "mpops.kind": "sweep"}
    with runs.tracked_run(cfg.registry.experiment, "sweep", artifact_location(root), tags=tags) as parent_id:
        runs.log_values(parent_id, params={**cfg.as_flat_dict(), "sweep.precisions_run": ",".join(precisions)})
        sp, _ = validated_split(cfg, root, parent_id, ds, prov)
        points, reports = [], []
        for b in batch_sizes:
            more, report = _batch(cfg, sp, precisions, b, parent_id, root)
            points, reports = points + more, reports + [report]
        points = mark_pareto(points)
        picks = tuple((b, r.selected) for b, r in zip(batch_sizes, reports))
        table = tradeoff_markdown(points, dict(picks))
        _log_sweep(parent_id, points, table, batch_sizes, reports)
        pick = dict(picks).get(cfg.train.batch_size, picks[0][1])
        runs.log_values(parent_id, tags={"sweep.gate_pick": pick or "none", "mlflow.note.content": table})
        get_run_logger().info("the gate would pick %s", pick)
    out_plot = pareto_plot(points, root / "out" / "sweep" / "pareto.png")  # a local copy, for people without the UI
    (out_plot.parent / "tradeoff.md").write_text(table)
    return SweepOutcome(parent_id, tuple(points), picks, tuple(reports), table, out_plot)


def _log_sweep(parent_id: str, points: list[SweepPoint], table: str, batch_sizes, reports) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pareto_plot(points, Path(tmp) / "pareto.png")
        runs.log_artifacts(parent_id, tmp, "sweep")
    runs.log_text(parent_id, table, "sweep/tradeoff.md")
    for b, report in zip(batch_sizes, reports):
        runs.log_text(parent_id, gate_markdown(report), f"sweep/gate_b{b}.md")


@flow(name="mpops-noise-floor", log_prints=True)
def noise_floor_flow(config: str | None = None, data: str | None = None,
                     overrides: dict[str, Any] | list[str] | None = None, seeds: int | None = None) -> NoiseOutcome:
    """fp32 trained with `seeds` seeds (default sweep.noise_seeds), each compared with the first as the gate would."""
    prepare_process()
    root, cfg = resolve(config, data, None, {**dict(override_pairs(overrides)), **({"sweep.noise_seeds": seeds} if seeds else {})})
    setup_tracking(root, cfg.registry.unreachable_after_s)
    chosen = tuple(cfg.train.seed + i for i in range(cfg.sweep.noise_seeds))
    ds = load_data(cfg)
    prov = provenance(cfg, root, ds)
    tags = {**prov.as_tags(), "mpops.kind": "noise-floor"}
    with runs.tracked_run(cfg.registry.experiment, "noise-floor", artifact_location(root), tags=tags) as parent_id:
        runs.log_values(parent_id, params={**cfg.as_flat_dict(), "noise.seeds": ",".join(map(str, chosen))})
        sp, _ = validated_split(cfg, root, parent_id, ds, prov)
        evals = [train_precision(replace(cfg, train=replace(cfg.train, seed=s)), sp, "fp32", parent_id, root,
                                 run_name=f"fp32 seed {s}").eval for s in chosen]
        rows = noise_rows(evals[0], evals[1:], sp.y_test, cfg.gate, tuple(map(str, sp.classes)))
        text = noise_markdown(rows, list(chosen), [e.accuracy for e in evals])
        runs.log_text(parent_id, text, "noise_floor.md")
        runs.log_values(parent_id, metrics={f"noise.{r.config_key.split('.', 1)[1]}.worst": r.worst for r in rows},
                        tags={"noise.tighter_than_noise": ", ".join(r.config_key for r in rows
                                                                     if r.tighter_than_noise) or "none",
                              "mlflow.note.content": text})
    return NoiseOutcome(parent_id, chosen, tuple(e.accuracy for e in evals), tuple(rows), text)
