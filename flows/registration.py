"""Registering the selected model: its artifacts first, then the promotion decision, then the version.

Everything the version points at (model card, gate report, model, monitoring reference) is logged
into the model's run before the version exists; the registry then creates it all-or-nothing.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import Trained, no_retry_on_user_error
from pipeline.core.config import Config
from pipeline.core.data import Split
from pipeline.core.device import device_label
from pipeline.core.drift import reference_stats
from pipeline.core.errors import GateFailed, NotServable
from pipeline.core.gate import GateReport
from pipeline.core.modes import BASELINE
from pipeline.core.promotion import PromotionDecision, decide_promotion
from pipeline.core.provenance import Provenance
from pipeline.core.servability import ServeCheck, in_process_predictions, judge
from pipeline.core.runkey import TAG as RUN_KEY_TAG
from pipeline.core.validation.validate import ValidationReport
from pipeline.render import markdown
from pipeline.tracking import reference, registry, runs, serve_probe


def selected_or_fail(trained: list[Trained], report: GateReport) -> Trained:
    if report.selected is None:
        raise GateFailed(f"no candidate passed the gates: {report.reason}; nothing registered",
                         detail="\n".join(f"  {v.precision}: {v.reason}" for v in report.verdicts), report=report)
    return next(t for t in trained if t.result.precision == report.selected)


@task(name="log-model", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE,
      retry_condition_fn=no_retry_on_user_error)
def log_model(cfg: Config, sp: Split, chosen: Trained, twin: Trained | None, report: GateReport,
              prov: Provenance, validation: ValidationReport, parent_id: str) -> str:
    """Model card, gate report, the model and its monitoring reference, into the model's run; the model URI."""
    r = chosen.result
    facts = markdown.CardFacts(cfg.registry.model_name, r.precision, device_label(r.device), torch.__version__,
                               prov.data_md5, prov.git_commit, len(sp.y_train) + len(sp.y_test),
                               len(sp.feature_columns), tuple(map(str, sp.classes)), validation.summary(), parent_id,
                               "as pinned by data.dvc" if prov.data_is_pinned else
                               f"not the data data.dvc pins, {prov.dvc_md5 or 'none'}")
    runs.log_text(chosen.run_id, markdown.model_card(facts, report), "model_card.md")
    runs.log_text(chosen.run_id, markdown.gate_markdown(report), "gate/report.md")
    runs.log_text(chosen.run_id, report.to_json(), "gate/report.json")
    model_uri = registry.log_model(chosen.run_id, r, sp)
    # The twin's test predictions are those of its evaluation: no second pass over the test split.
    # Image models drift on per-image statistics (size, intensity, contrast), not on single pixels.
    drift_x, drift_columns = (sp.monitor_x_train, sp.monitor_columns) if sp.monitor_columns else \
        (sp.x_train, sp.feature_columns)
    ref = reference_stats(drift_x, drift_columns, sp.classes, r.precision, chosen.eval.predictions,
                          chosen.eval.accuracy, twin.eval.predictions if twin else None, cfg.monitor,
                          chosen.eval.probabilities, sp.y_test)
    reference.log_reference(chosen.run_id, ref, twin.result if twin else None, sp)
    return model_uri


def champion_decision(cfg: Config, sp: Split, chosen: Trained) -> PromotionDecision:
    champion = registry.current_champion(cfg.registry.model_name, sp)
    return decide_promotion(chosen.eval, champion, sp.y_test, cfg.gate, tuple(map(str, sp.classes)))


@task(name="decide-promotion", cache_policy=NO_CACHE)
def decide(cfg: Config, sp: Split, chosen: Trained) -> PromotionDecision:
    return champion_decision(cfg, sp, chosen)


def servability_check(cfg: Config, sp: Split, chosen: Trained, started: serve_probe.ProbeProcess | None = None
                      ) -> Callable[[str], ServeCheck] | None:
    """The check the registry runs on the new version before any alias moves (None: serving.check is off)."""
    if not cfg.serving.check:
        return None
    r, classes = chosen.result, tuple(sp.classes)
    example = registry.input_example(sp)
    rows = registry.input_example(sp, cfg.serving.check_rows)
    # The frames hold what a caller sends (text categories included); the model saw their encoded rows.
    expected_example = in_process_predictions(r.model, r.policy, sp.x_test[:len(example)], classes)
    expected_rows = in_process_predictions(r.model, r.policy, sp.x_test[:len(rows)], classes)

    def check(version: str) -> ServeCheck:
        report = serve_probe.probe(f"models:/{cfg.registry.model_name}/{version}", rows,
                                   cfg.serving.check_repeats, cfg.serving.check_timeout_s, started)
        verdict = judge(report, expected_example, expected_rows, r.precision)
        (get_run_logger().info if verdict.passed else get_run_logger().error)(
            "servability of version %s: %s", version, verdict.reason)
        return verdict
    return check


@task(name="register-model", cache_policy=NO_CACHE)
def register(cfg: Config, sp: Split, chosen: Trained, model_uri: str, tags: dict[str, str], description: str,
             decision: PromotionDecision, started: serve_probe.ProbeProcess | None = None) -> registry.Registration:
    """The registry decides again, with the same policy, if another run moved the champion since `decide`;
    a version that fails the servability check stays challenger only, and the run fails (exit 4)."""
    reg = registry.register(cfg.registry.model_name, model_uri, tags, description, decision,
                            redecide=partial(champion_decision, cfg, sp, chosen),
                            check=servability_check(cfg, sp, chosen, started),
                            check_s=cfg.serving.check_timeout_s if cfg.serving.check else 0.0)
    if reg.serve_check is not None and not reg.serve_check.passed:
        raise NotServable(f"{reg.model_name} version {reg.version} failed the servability check: "
                          f"{reg.serve_check.reason}; it is challenger only, champion unchanged")
    return reg


def register_selected(cfg: Config, sp: Split, chosen: Trained, trained: list[Trained], report: GateReport,
                      prov: Provenance, validation: ValidationReport, parent_id: str, run_key: str = "",
                      started: serve_probe.ProbeProcess | None = None) -> registry.Registration:
    twin = next((t for t in trained if t.result.precision == BASELINE), None)
    model_uri = log_model(cfg, sp, chosen, twin, report, prov, validation, parent_id)
    decision = decide(cfg, sp, chosen)
    tags = registry.version_tags(chosen.result, chosen.eval, report, prov, validation.passed, parent_id)
    if run_key:  # what `mpops run` compares before training again (pipeline/core/runkey.py)
        tags[RUN_KEY_TAG] = run_key
    description = markdown.version_description(chosen.result.precision, chosen.eval, report, parent_id,
                                               runs.run_url(parent_id), prov)
    return register(cfg, sp, chosen, model_uri, tags, description, decision, started)
