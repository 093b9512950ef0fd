"""The champion/challenger decision, a pure function on constructed evaluations."""
from __future__ import annotations

import numpy as np

from pipeline.core.config import GateConfig
from pipeline.core.evaluate import scores
from pipeline.core.promotion import CurrentChampion, decide_promotion

CLASSES = tuple(str(c) for c in range(10))


def _eval(y: np.ndarray, pred: np.ndarray):
    probs = np.full((len(y), 10), 0.01)
    probs[np.arange(len(y)), pred] = 0.91
    return scores("bf16", y, probs, 10)


def test_without_a_champion_the_new_version_takes_it():
    y = np.repeat(np.arange(10), 20)
    d = decide_promotion(_eval(y, y), None, y, GateConfig(), CLASSES)
    assert d.move_champion and d.reason == "no champion yet"


def test_a_champion_that_cannot_be_scored_is_replaced_with_the_reason():
    y = np.repeat(np.arange(10), 20)
    d = decide_promotion(_eval(y, y), CurrentChampion("4", None, "its feature columns or classes differ"), y,
                         GateConfig(), CLASSES)
    assert d.move_champion and d.reason.startswith("champion v4 cannot be compared: its feature columns")


def test_a_worse_model_leaves_the_champion_and_says_which_check_failed():
    y = np.repeat(np.arange(10), 20)
    worse = y.copy()
    worse[y == 3] = 5  # class 3 is gone
    d = decide_promotion(_eval(y, worse), CurrentChampion("2", _eval(y, y)), y, GateConfig(), CLASSES)
    assert not d.move_champion
    assert "vs champion v2 1.0000" in d.reason and "class 3 recall fell by 1.000" in d.reason
    assert d.reason.endswith("champion stays")


def test_an_equal_or_better_model_takes_champion():
    y = np.repeat(np.arange(10), 20)
    slightly_worse_champion = y.copy()
    slightly_worse_champion[::50] = (y[::50] + 1) % 10
    d = decide_promotion(_eval(y, y), CurrentChampion("2", _eval(y, slightly_worse_champion)), y, GateConfig(),
                         CLASSES)
    assert d.move_champion and d.reason.endswith("passed the quality comparison against the champion")
