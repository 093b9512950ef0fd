"""The pure parts of serving: the servability verdict, rollback refusals, the drift sample, the history walk."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.core.chunks import ChunkWriter, Reservoir, feature_matrix, iter_frames
from pipeline.core.errors import DataValidationError
from pipeline.core.rollback import refusals
from pipeline.core.servability import ProbeReport, judge, latency_figures, mismatches

LAT = {1: (1.0, 2.0, 3.0), 64: (5.0, 6.0, 50.0)}


def test_the_check_passes_only_on_equal_predictions_with_latency():
    ok = judge(ProbeReport("", 1.5, ("1", "2"), ("1", "2", "3"), LAT), [1, 2], [1, 2, 3], "bf16")
    assert ok.passed and "bf16" in ok.reason
    assert ok.tags()["serve.check"] == "passed" and float(ok.tags()["serve.p95_ms_b64"]) > 40
    wrong = judge(ProbeReport("", 1.5, ("1", "2"), ("1", "9", "3"), LAT), [1, 2], [1, 2, 3], "bf16")
    assert not wrong.passed and "1 of 3 rows of the test slice (first at row 1)" in wrong.reason
    short = judge(ProbeReport("", 1.5, ("1", "2"), ("1",), LAT), [1, 2], [1, 2, 3], "fp32")
    assert not short.passed and "2 of 3" in short.reason
    broken = judge(ProbeReport(error="ModuleNotFoundError: pipeline"), [1], [1], "fp32")
    assert not broken.passed and "does not load" in broken.reason and broken.tags()["serve.check"] == "failed"
    no_latency = judge(ProbeReport("", 1.0, ("1",), ("1",), {1: (1.0,)}), [1], [1], "fp32")
    assert not no_latency.passed and "64" in no_latency.reason


def test_latency_figures_and_mismatches():
    f = latency_figures(0.5, LAT)
    assert f["serve.p50_ms_b1"] == 2.0 and f["serve.p50_ms_b64"] == 6.0 and f["serve.load_s"] == 0.5
    assert mismatches(["a", 1], ["a", "1"]) == [] and mismatches([1, 2], [1]) == [1]


def test_rollback_refuses_incomplete_or_failed_versions():
    complete = {"precision": "bf16", "gate.passed": "true", "validation.passed": "true",
                "registry.champion_decision": "no champion yet"}
    assert refusals("READY", complete) == []
    assert "failed its gate" in refusals("READY", {**complete, "gate.passed": "false"})[0]
    assert "incomplete" in refusals("READY", {"precision": "fp32"})[0]
    assert "servability" in refusals("READY", {**complete, "serve.check": "failed", "serve.reason": "x"})[0]
    assert "PENDING_REGISTRATION" in refusals("PENDING_REGISTRATION", complete)[0]


def test_the_drift_sample_is_bounded_and_uniform():
    sample = Reservoir(1000, seed=0)
    for start in range(0, 100_000, 7_000):
        x = np.arange(start, min(start + 7_000, 100_000), dtype=np.float64)[:, None]
        sample.add(x, pd.Series(x[:, 0] % 10))
    assert sample.x.shape == (1000, 1) and len(sample.labels) == 1000
    assert 40_000 < sample.x.mean() < 60_000  # drawn from the whole stream, not its head
    assert (sample.labels.to_numpy() == sample.x[:, 0] % 10).all()  # rows and labels stay paired


def test_chunks_round_trip_and_refuse_bad_features(tmp_path):
    frame = pd.DataFrame({"a": range(25), "b": np.linspace(0, 1, 25)})
    frame.to_csv(tmp_path / "in.csv", index=False)
    frame.to_parquet(tmp_path / "in.parquet", row_group_size=5)
    for name in ("in.csv", "in.parquet"):
        chunks = list(iter_frames(tmp_path / name, 10))
        assert [len(c) for c in chunks] == [10, 10, 5]
    writer = ChunkWriter(tmp_path / "out.parquet")
    for c in iter_frames(tmp_path / "in.csv", 10):
        writer.write(c)
    writer.close()
    assert pd.read_parquet(tmp_path / "out.parquet").equals(pd.read_csv(tmp_path / "in.csv"))
    with pytest.raises(DataValidationError, match="lacks feature columns"):
        feature_matrix(frame, ["a", "c"], "x")
    with pytest.raises(DataValidationError, match="non-numeric.*values not shown"):
        feature_matrix(frame.assign(b="secret"), ["a", "b"], "x")
    with pytest.raises(DataValidationError, match="1 missing or infinite"):
        feature_matrix(frame.assign(b=[np.nan] + [0.0] * 24), ["a", "b"], "x")


def test_the_previous_champion_is_read_from_the_history():
    from pipeline.tracking.history import previous_champion

    entries = [{"alias": "challenger", "version": "1"}, {"alias": "champion", "version": "1"},
               {"alias": "challenger", "version": "2"}, {"alias": "champion", "version": "2"},
               {"alias": "challenger", "version": "3"}]
    assert previous_champion(entries, "2") == "1"
    assert previous_champion(entries[:2], "1") is None
