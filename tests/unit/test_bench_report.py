"""bench/report.py renders docs/benchmarks.md from the benches' JSON: every figure comes from a file."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_page_is_rendered_from_the_json_and_names_the_machine(tmp_path):
    kept = tmp_path / "bench"
    kept.mkdir()
    (kept / "matmul_peak.json").write_text(json.dumps({
        "bench": "matmul_peak", "gflops": {"fp32": {"512": 101.25}, "bf16": {"512": 303.75}},
        "peak_gflops": {"fp32": 101.25, "bf16": 303.75}, "peak_ratio_vs_fp32": {"fp32": 1.0, "bf16": 3.0}}))
    (kept / "gate_power.json").write_text(json.dumps({"bench": "gate_power", "trials": 7, "worst_gap": 0.0421}))
    page = tmp_path / "benchmarks.md"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), "--from-json", str(kept),
                           "--only", "matmul_peak,gate_power,overhead", "--output", str(page)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert "| bf16 | 303.8 | 303.8 | 3.00x |" in text  # the figures of the file, nothing else
    assert "| trials | 7 |" in text and "| worst_gap | 0.042 |" in text
    assert "Here the bf16 matmul peak is 3.00x fp32's." in text
    for flag in ("avx512_bf16", "amx_bf16", "avx512_fp16"):
        assert f"`{flag}`" in text
    assert "torch " in text and "Not run" in text and "overhead" in text
