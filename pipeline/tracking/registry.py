"""The model registry: log the model, read the current champion, register a version all-or-nothing.

The registry carries out a promotion decision it is given (pipeline.core.promotion); it decides nothing.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mlflow
import pandas as pd
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from pipeline.core.data import Split
from pipeline.core.device import device_label
from pipeline.core.evaluate import EvalResult, evaluate, predict_indices
from pipeline.core.gate import GateReport
from pipeline.core.promotion import CurrentChampion, PromotionDecision
from pipeline.core.provenance import Provenance
from pipeline.core.servability import ServeCheck
from pipeline.core.train import TrainResult
from pipeline.tracking.bundle import write_bundle
from pipeline.tracking import history
from pipeline.tracking.champion_lock import champion_lock
from pipeline.tracking.pyfunc import FALLBACK

CHAMPION, CHALLENGER = "champion", "challenger"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # pipeline/: travels with the model as its code
MODEL_CODE = Path(__file__).resolve().with_name("pyfunc_model.py")  # MLflow "models from code"


@dataclass(frozen=True)
class Registration:
    model_name: str
    version: str
    aliases: tuple[str, ...]
    champion_reason: str
    serve_check: ServeCheck | None = None  # None: no servability check was asked for


def precision_tags(result: TrainResult) -> dict[str, str]:
    return {**result.policy.mode.tags, "precision.device": device_label(result.device)}


def version_tags(result: TrainResult, ev: EvalResult, report: GateReport, prov: Provenance,
                 validation_passed: bool, parent_run_id: str) -> dict[str, str]:
    """The tags every registered version carries (docs/design.md lists them)."""
    verdict = report.verdict(result.precision)
    return {
        **precision_tags(result), "torch.version": torch.__version__, **prov.as_tags(),
        "gate.passed": str(verdict.passed).lower(), "gate.speedup_vs_fp32": f"{verdict.speedup:.2f}",
        "gate.accuracy_delta_vs_fp32": f"{verdict.accuracy_delta:.4f}",
        "gate.memory_ratio_vs_fp32": f"{verdict.memory_ratio:.2f}", "gate.reason": report.reason[:5000],
        "gate.selection": report.selection, "validation.passed": str(validation_passed).lower(),
        "eval.accuracy": f"{ev.accuracy:.6f}", "eval.macro_f1": f"{ev.macro_f1:.6f}", "eval.ece": f"{ev.ece:.6f}",
        "mlflow.parent_run_id": parent_run_id,
    }


def input_example(split: Split, rows: int = 5) -> pd.DataFrame:
    if split.encoder is not None:  # the caller gives the categories as text, the encoder one-hots them
        return split.encoder.inverse_transform(split.x_test[:rows])
    # float64 in the signature: MLflow then accepts int and float inputs alike (int -> float32 it refuses).
    return pd.DataFrame(split.x_test[:rows].astype("float64"), columns=list(split.feature_columns))


def log_model(run_id: str, result: TrainResult, split: Split) -> str:
    """The selected model as a pyfunc model in its run; returns the model URI to register."""
    example = input_example(split)
    preds = [split.classes[i] for i in predict_indices(result.model, split.x_test[:5], result.policy)]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = write_bundle(Path(tmp) / "bundle", result.model, result.precision, result.spec,
                              split.feature_columns, split.classes, split.encoder, split.image_shape)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(MODEL_CODE), artifacts={"bundle": str(bundle)},
                code_paths=[str(PACKAGE_DIR)], signature=infer_signature(example, pd.Series(preds)),
                input_example=example,
                model_config={FALLBACK: False},  # declared, so that load_model(model_config=...) may set it
                # Explicit: inferring them costs ~10 s a model.
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                                  f"pandas=={pd.__version__}", "numpy"],
            )
    return info.model_uri


def current_champion(name: str, split: Split) -> CurrentChampion | None:
    """The version holding `champion`, scored on the current test rows; None when there is none."""
    try:
        version = MlflowClient().get_model_version_by_alias(name, CHAMPION).version
    except MlflowException:
        return None
    try:  # scored in its fallback precision where this device lacks its own, and the reason says so
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}", model_config={FALLBACK: True})
        bundle = model.unwrap_python_model().bundle
    except Exception as e:  # MLflow raises several types for a missing or unreadable model
        return CurrentChampion(str(version), None, f"it could not be loaded ({str(e).splitlines()[0][:200]})")
    if list(bundle.feature_columns) != list(split.feature_columns) or \
            [str(c) for c in bundle.classes] != [str(c) for c in split.classes]:
        return CurrentChampion(str(version), None, "its feature columns or classes differ from the current data")
    scored_as = "" if bundle.served_precision == bundle.trained_precision else \
        f"trained in {bundle.trained_precision}, scored in {bundle.served_precision} on this device"
    return CurrentChampion(str(version), evaluate(bundle.model, split, bundle.policy, fgsm_epsilon=0.0),
                           scored_as=scored_as)


def _champion_version(client: MlflowClient, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def _still_valid(client: MlflowClient, name: str, decision: PromotionDecision,
                 redecide: Callable[[], PromotionDecision] | None) -> PromotionDecision:
    """The compare of the compare-and-set: a decision stands only while the champion it was made against holds
    the alias; otherwise it is made again against the champion now. Without `redecide`, a stale decision to keep
    the champion is carried out and a stale move is refused."""
    for _ in range(3):
        now = _champion_version(client, name)
        if now == decision.against:
            return decision
        if redecide is None:
            break
        decision = redecide()
    if not decision.move_champion:
        return decision
    return PromotionDecision(False, f"{decision.reason}; but v{now} took champion meanwhile, and it was not "
                                    "compared: champion stays", now)


def _ensure_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, description="mpops: mixed-precision models gated against fp32")
        except MlflowException as e:  # a concurrent run created it first
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise


def register(name: str, model_uri: str, tags: dict[str, str], description: str, decision: PromotionDecision,
             redecide: Callable[[], PromotionDecision] | None = None,
             check: Callable[[str], ServeCheck] | None = None, check_s: float = 0.0) -> Registration:
    """Register the version with its tags and description, then move the aliases the decision allows.

    All of it under the champion lock (pipeline.tracking.champion_lock), where the decision is checked
    against the champion now and, if that moved since, made again by `redecide`: runs that register
    at once act as if they came one after another, in version order. A failure before the aliases
    move deletes the half-made version, so the registry never shows a version without its tags and
    description, and no alias ever points at one. `check` (the servability check) judges the version
    once it exists and before any alias moves: a version that fails it becomes challenger only. It may take
    up to `check_s` seconds, so the lock counts as stale only past that much more."""
    client = MlflowClient()
    _ensure_model(client, name)
    stale_s = max(120.0, check_s + 120.0)
    with champion_lock(client, name, wait_s=max(300.0, 3 * stale_s), stale_after_s=stale_s):
        decision = _still_valid(client, name, decision, redecide)
        version = mlflow.register_model(model_uri, name, tags=tags)
        try:
            client.update_model_version(name, version.version, description=description)
            served = _serve_check(client, name, version, check)
            if served is not None and not served.passed and decision.move_champion:
                decision = PromotionDecision(False, f"{decision.reason}; but it failed the servability check "
                                                    f"({served.reason}): champion stays", decision.against)
            client.set_model_version_tag(name, version.version, "registry.champion_decision", decision.reason[:5000])
        except BaseException:
            client.delete_model_version(name, version.version)
            raise
        run = tags.get("mlflow.parent_run_id", "")
        history.move_alias(client, name, CHALLENGER, version.version, "newest version that passed the gate", run)
        aliases = [CHALLENGER]
        if decision.move_champion:
            history.move_alias(client, name, CHAMPION, version.version, decision.reason, run)
            aliases.append(CHAMPION)
    return Registration(name, str(version.version), tuple(aliases), decision.reason, served)


def _serve_check(client: MlflowClient, name: str, version, check: Callable[[str], ServeCheck] | None
                 ) -> ServeCheck | None:
    """The check's verdict as version tags, its figures also as metrics of the version's run."""
    if check is None:
        return None
    served = check(str(version.version))
    for key, value in served.tags().items():
        client.set_model_version_tag(name, version.version, key, value)
    for key, value in served.figures.items():
        client.log_metric(version.run_id, key, value)
    return served


def delete_unfinished(name: str, parent_run_id: str) -> list[str]:
    """The versions a pipeline run registered without moving any alias to them: a registration cut short
    (the process killed, the tracking server gone) after the version existed. Deleted; their numbers."""
    client = MlflowClient()
    deleted = []
    for v in client.search_model_versions(f"name = '{name}' and tags.`mlflow.parent_run_id` = '{parent_run_id}'"):
        if not client.get_model_version(name, v.version).aliases:
            client.delete_model_version(name, v.version)
            deleted.append(str(v.version))
    return deleted
