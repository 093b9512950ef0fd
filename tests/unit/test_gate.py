from pipeline.config import GateConfig
from pipeline.gate import CandidateMetrics, gate


def m(p, acc, sps, mem=100, nonfinite=0):
    return CandidateMetrics(p, acc, acc, sps, mem, nonfinite)


def test_fastest_passing_candidate_is_selected():
    r = gate([m("fp32", 0.97, 100), m("bf16", 0.968, 250, 60), m("fp16", 0.97, 180)], GateConfig())
    assert r.selected == "bf16"
    v = r.verdict("bf16")
    assert v.passed and round(v.speedup, 2) == 2.5 and round(v.memory_ratio, 2) == 0.6


def test_accuracy_drop_beyond_tolerance_fails():
    r = gate([m("fp32", 0.97, 100), m("bf16", 0.94, 300)], GateConfig(accuracy_tolerance=0.01))
    assert r.selected == "fp32"
    assert not r.verdict("bf16").passed
    assert "accuracy delta vs fp32" in r.verdict("bf16").reason


def test_slowdown_fails_speed_gate_and_is_explained():
    r = gate([m("fp32", 0.97, 1000), m("fp16", 0.97, 20)], GateConfig(min_speedup=1.0))
    assert r.selected == "fp32"
    assert "speedup vs fp32 0.02" in r.verdict("fp16").reason
    assert "fp16" in r.reason


def test_nonfinite_loss_fails():
    r = gate([m("fp32", 0.97, 100), m("fp16", 0.97, 200, nonfinite=3)], GateConfig())
    assert r.selected == "fp32" and "finite loss" in r.verdict("fp16").reason


def test_nothing_passes_the_floor():
    r = gate([m("fp32", 0.5, 100), m("bf16", 0.5, 200)], GateConfig(min_accuracy=0.9))
    assert r.selected is None
    assert "accuracy floor" in r.verdict("fp32").reason


def test_report_json_has_verdicts():
    import json

    r = gate([m("fp32", 0.97, 100), m("bf16", 0.97, 200)], GateConfig())
    body = json.loads(r.to_json())
    assert body["selected"] == "bf16" and body["verdicts"][1]["passed"] is True


def test_a_candidate_that_stopped_early_fails_with_its_reason():
    base = CandidateMetrics("fp32", 0.97, 0.97, 1000.0, 100, 0)
    stopped = CandidateMetrics("fp16", 0.97, 0.97, 2000.0, 80, 0, skipped_share=0.9,
                               stop_reason="21 of 23 optimizer steps skipped for overflow (91%), threshold 50%")
    report = gate([base, stopped], GateConfig())
    assert report.selected == "fp32"
    assert "stopped early: 21 of 23 optimizer steps skipped" in report.verdict("fp16").reason


def test_probe_drops_slow_and_broken_candidates_never_fp32():
    from pipeline.config import ProbeConfig
    from pipeline.probe import decide

    measured = {"fp32": (1000.0, 0, 0, 30), "bf16": (100.0, 0, 0, 30), "fp16": (900.0, 0, 20, 30),
                "bf16-true": (800.0, 0, 0, 30)}
    results = {r.precision: r for r in decide(measured, ProbeConfig(max_slowdown=2.0))}
    assert not results["fp32"].dropped and not results["bf16-true"].dropped
    assert results["bf16"].dropped and "10.0x slower than fp32 in a 30-step probe (limit 2x)" in results["bf16"].reason
    assert results["fp16"].dropped and "20 of 30 probe steps skipped" in results["fp16"].reason
