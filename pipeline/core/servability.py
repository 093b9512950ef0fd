"""The servability check's verdict: does a registered version, loaded in a fresh process, serve what it was
trained to serve? A pure judgement of what the probe process reported (pipeline.tracking.serve_probe runs it).

Before `champion` may move, the version is loaded from the registry by a plain MLflow client in a process with
no project source, the role TFX's InfraValidator plays: its predictions on the input example and on a slice of
the test split must equal those of the trained model in this process, in the same precision.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

BATCH_SIZES = (1, 64)  # latency is measured at these batch sizes


@dataclass(frozen=True)
class ProbeReport:
    """What the probe process said: an error, or the load time, predictions and per-call latencies."""

    error: str = ""  # the first line of what failed (loading, scoring); empty when it ran
    load_s: float = 0.0
    example: tuple[Any, ...] = ()  # predictions on the registered input example
    rows: tuple[Any, ...] = ()  # predictions on the test slice
    latency_ms: dict[int, tuple[float, ...]] = field(default_factory=dict)  # batch size -> timed calls

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "ProbeReport":
        return cls(str(raw.get("error", "")), float(raw.get("load_s", 0.0)), tuple(raw.get("example", ())),
                   tuple(raw.get("rows", ())), {int(k): tuple(map(float, v)) for k, v in
                                                raw.get("latency_ms", {}).items()})


@dataclass(frozen=True)
class ServeCheck:
    passed: bool
    reason: str  # tagged as serve.reason on the version
    figures: dict[str, float] = field(default_factory=dict)  # serve.load_s, serve.p50_ms_b1, ...

    def tags(self) -> dict[str, str]:
        return {"serve.check": "passed" if self.passed else "failed", "serve.reason": self.reason[:5000],
                **{k: f"{v:.4g}" for k, v in self.figures.items()}}


def latency_figures(load_s: float, latency_ms: dict[int, tuple[float, ...]]) -> dict[str, float]:
    out = {"serve.load_s": load_s}
    for batch, calls in sorted(latency_ms.items()):
        if calls:
            out[f"serve.p50_ms_b{batch}"] = float(np.percentile(calls, 50))
            out[f"serve.p95_ms_b{batch}"] = float(np.percentile(calls, 95))
    return out


def mismatches(expected: list[Any] | tuple[Any, ...], got: list[Any] | tuple[Any, ...]) -> list[int]:
    """Row positions whose served prediction differs from the in-process one; a length difference counts as
    every row past the shorter list. Labels compare as text: JSON turns numpy ints into ints, str stays str."""
    n = min(len(expected), len(got))
    differ = [i for i in range(n) if str(expected[i]) != str(got[i])]
    return differ + list(range(n, max(len(expected), len(got))))


def judge(report: ProbeReport, expected_example: list[Any], expected_rows: list[Any], precision: str
          ) -> ServeCheck:
    """Passed only when the probe loaded the version and every prediction equals the in-process one."""
    if report.error:
        return ServeCheck(False, f"the version does not load or score in a fresh process: {report.error}")
    figures = latency_figures(report.load_s, report.latency_ms)
    for what, expected, got in (("input example", expected_example, report.example),
                                ("test slice", expected_rows, report.rows)):
        wrong = mismatches(expected, got)
        if wrong:
            return ServeCheck(False, f"served predictions differ from the in-process {precision} ones on "
                                     f"{len(wrong)} of {len(expected)} rows of the {what} (first at row {wrong[0]})",
                              figures)
    missing = [b for b in BATCH_SIZES if f"serve.p95_ms_b{b}" not in figures]
    if missing:
        return ServeCheck(False, f"no latency measured at batch {missing}", figures)
    return ServeCheck(True, f"loads in a fresh process in {report.load_s:.2f} s and serves {precision} "
                            f"predictions equal to the in-process ones on {len(expected_example)} example and "
                            f"{len(expected_rows)} test rows; p95 {figures['serve.p95_ms_b1']:.2f} ms at batch 1, "
                            f"{figures['serve.p95_ms_b64']:.2f} ms at batch 64", figures)


def in_process_predictions(model: Any, policy: Any, x: np.ndarray, classes: tuple[Any, ...]) -> list[Any]:
    """The labels the trained model gives in this process, in its precision: what the served ones must equal."""
    from pipeline.core.evaluate import predict_indices

    return [classes[i] for i in predict_indices(model, x.astype(np.float32), policy)]
