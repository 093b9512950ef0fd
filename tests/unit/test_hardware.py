"""The summary's hardware sentence: which CPU flags or GPU capability give a precision its hardware path."""
import torch

from pipeline.core.hardware import Hardware, cpu_hardware, detect, hardware_line, precision_path

AMX = "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
ZEN2 = "model name\t: AMD EPYC 7R32\nflags\t\t: fpu avx2 fma\n"


def test_flags_are_read_from_cpuinfo():
    hw = cpu_hardware(AMX)
    assert hw.name == "Intel(R) Xeon(R) Platinum 8480+"
    assert hw.flags == ("avx512_bf16", "amx_bf16")


def test_a_cpu_without_bf16_hardware_says_bf16_runs_in_software():
    text = precision_path(cpu_hardware(ZEN2), "bf16")
    assert text == "this CPU has no avx512_bf16/amx_bf16: bf16 matmuls run in software"


def test_a_cpu_with_amx_names_the_flags_that_give_bf16_its_path():
    hw = cpu_hardware(AMX)
    assert precision_path(hw, "bf16") == "this CPU has avx512_bf16, amx_bf16: bf16 matmuls run in hardware"
    assert "no avx512_fp16/amx_fp16" in precision_path(hw, "fp16")


def test_unknown_flags_are_not_guessed():
    assert "unknown" in precision_path(cpu_hardware("model name: X\n"), "bf16")


def test_gpu_capability_decides_the_tensor_core_path():
    a100 = Hardware("cuda", "NVIDIA A100", None, (8, 0))
    assert "has tensor cores for bf16" in precision_path(a100, "bf16")
    assert "lacks tensor cores for fp8 (needs 8.9)" in precision_path(a100, "fp8")


def test_the_line_names_every_reduced_precision_and_this_machine():
    line = hardware_line(detect(torch.device("cpu")), ("fp32", "bf16", "fp16"))
    assert line.startswith("CPU ") and "bf16: " in line and "fp16: " in line and "fp32:" not in line
