"""`mpops sweep` and `mpops noise-floor`: experiments over precisions and seeds. Nothing is registered."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from prefect import flow, get_run_logger

from flows.training import _user_error_as_state, load_data, provenance, train_precision, validated_split
from pipeline import registry
from pipeline.config import Config
from pipeline.gate import CandidateMetrics, GateReport, gate
from pipeline.precision import available_precisions, resolve_device
from pipeline.setup import artifact_location
from pipeline.sweep import (NoiseRow, SweepPoint, mark_pareto, noise_markdown, noise_rows, pareto_plot,
                            sweep_points, tradeoff_markdown)


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


def _start(cfg: Config, root: Path, name: str):
    ds = load_data(cfg, return_state=True).result()
    prov = provenance(root, ds)
    parent_id = registry.start_run(cfg.registry.experiment, name, artifact_location(root),
                                   tags={**prov.as_tags(), "mpops.kind": name})
    return ds, parent_id


@flow(name="mpops-sweep", log_prints=True)
def sweep_flow(cfg: Config, root: Path) -> SweepOutcome:
    return _user_error_as_state(_sweep, cfg, root)


def _sweep(cfg: Config, root: Path) -> SweepOutcome:
    precisions = cfg.sweep.precisions or available_precisions(resolve_device(cfg.train.device))
    batch_sizes = cfg.sweep.batch_sizes or (cfg.train.batch_size,)
    ds, parent_id = _start(cfg, root, "sweep")
    ok = False
    try:
        registry.log_values(parent_id, params={**cfg.as_flat_dict(), "sweep.precisions_run": ",".join(precisions)})
        sp, _ = validated_split(cfg, root, parent_id, ds)
        points, picks, reports = [], [], []
        for b in batch_sizes:
            bcfg = replace(cfg, train=replace(cfg.train, batch_size=b))
            trained = [train_precision(bcfg, sp, p, parent_id, root, run_name=f"{p} b{b}") for p in precisions]
            report = gate([CandidateMetrics.of(r, e) for r, e, _ in trained], sp.y_test, cfg.gate,
                          classes=sp.classes)
            points += sweep_points(b, [t[0] for t in trained], [t[1] for t in trained], report)
            picks.append((b, report.selected))
            reports.append(report)
        points = mark_pareto(points)
        table = tradeoff_markdown(points, dict(picks))
        with tempfile.TemporaryDirectory() as tmp:
            plot = pareto_plot(points, Path(tmp) / "pareto.png")
            registry.log_artifacts(parent_id, tmp, "sweep")
        registry.log_text(parent_id, table, "sweep/tradeoff.md")
        for b, report in zip(batch_sizes, reports):
            registry.log_text(parent_id, report.to_markdown(), f"sweep/gate_b{b}.md")
        pick = dict(picks).get(cfg.train.batch_size, picks[0][1])
        registry.log_values(parent_id, tags={"sweep.gate_pick": pick or "none", "mlflow.note.content": table})
        get_run_logger().info("the gate would pick %s", pick)
        ok = True
    finally:
        registry.end_run(parent_id, ok)
    out_plot = root / "out" / "sweep" / "pareto.png"
    pareto_plot(points, out_plot)  # a local copy beside the table, for people without the MLflow UI open
    (out_plot.parent / "tradeoff.md").write_text(table)
    return SweepOutcome(parent_id, tuple(points), tuple(picks), tuple(reports), table, out_plot)


@flow(name="mpops-noise-floor", log_prints=True)
def noise_floor_flow(cfg: Config, root: Path, seeds: int) -> NoiseOutcome:
    return _user_error_as_state(_noise_floor, cfg, root, seeds)


def _noise_floor(cfg: Config, root: Path, n_seeds: int) -> NoiseOutcome:
    seeds = tuple(cfg.train.seed + i for i in range(n_seeds))
    ds, parent_id = _start(cfg, root, "noise-floor")
    ok = False
    try:
        registry.log_values(parent_id, params={**cfg.as_flat_dict(), "noise.seeds": ",".join(map(str, seeds))})
        sp, _ = validated_split(cfg, root, parent_id, ds)
        evals = [train_precision(replace(cfg, train=replace(cfg.train, seed=s)), sp, "fp32", parent_id, root,
                                 run_name=f"fp32 seed {s}")[1] for s in seeds]
        rows = noise_rows(evals[0], evals[1:], sp.y_test, cfg.gate, tuple(map(str, sp.classes)))
        text = noise_markdown(rows, list(seeds), [e.accuracy for e in evals])
        registry.log_text(parent_id, text, "noise_floor.md")
        registry.log_values(parent_id, metrics={f"noise.{r.config_key.split('.', 1)[1]}.worst": r.worst for r in rows},
                            tags={"noise.tighter_than_noise": ", ".join(r.config_key for r in rows
                                                                         if r.tighter_than_noise) or "none",
                                  "mlflow.note.content": text})
        ok = True
    finally:
        registry.end_run(parent_id, ok)
    return NoiseOutcome(parent_id, seeds, tuple(e.accuracy for e in evals), tuple(rows), text)
