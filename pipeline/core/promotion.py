"""Champion/challenger: may a new version take `champion`? A pure decision; the registry carries it out.

The new model must pass the gate's quality comparison against the current champion, re-scored on
the current test rows (not its own, older, figures).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.config import GateConfig
from pipeline.core.evaluate import EvalResult
from pipeline.core.gate_checks import compare, quality_checks


@dataclass(frozen=True)
class CurrentChampion:
    version: str
    eval: EvalResult | None  # None: it could not be scored on the current data
    problem: str = ""  # why it could not be scored
    scored_as: str = ""  # e.g. "trained in fp8, scored in bf16 on this device": said in the reason


@dataclass(frozen=True)
class PromotionDecision:
    move_champion: bool
    reason: str  # logged as the version's registry.champion_decision tag
    # The champion version it was decided against (None: there was none). The registry moves `champion` only
    # while that is still the champion: a compare-and-set, so concurrent runs act as if they came one by one.
    against: str | None = None


def decide_promotion(new: EvalResult, champion: CurrentChampion | None, y: np.ndarray, cfg: GateConfig,
                     classes: tuple[str, ...]) -> PromotionDecision:
    if champion is None:
        return PromotionDecision(True, "no champion yet")
    version = champion.version
    if champion.eval is None:
        return PromotionDecision(True, f"champion v{version} cannot be compared: {champion.problem}; "
                                       "the new version replaces it", version)
    old = champion.eval
    cmp = compare(old, new, y, cfg)
    failed = [c for c in quality_checks(old, new, cmp, cfg, classes) if not c.passed]
    scored = f" ({champion.scored_as})" if champion.scored_as else ""
    figures = (f"accuracy {new.accuracy:.4f} vs champion v{version}{scored} {old.accuracy:.4f} on the current "
               f"test data (delta CI [{cmp.accuracy_ci[0]:+.4f}, {cmp.accuracy_ci[1]:+.4f}])")
    if failed:
        return PromotionDecision(False, f"{figures}; failed {'; '.join(c.describe() for c in failed)}; champion stays",
                                 version)
    return PromotionDecision(True, f"{figures}; passed the quality comparison against the champion", version)
