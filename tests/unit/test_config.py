import pytest

from pipeline.core.config import Config
from pipeline.core.config_load import load_config, with_precisions
from pipeline.core.errors import ConfigError


def test_defaults_are_valid():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.precisions == ("fp32", "bf16", "fp16")


def test_set_overrides_are_typed():
    cfg = load_config(overrides=["train.epochs=3", "train.lr=0.01", "gate.min_speedup=1.5", "precisions=fp32,bf16"])
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.train.lr == 0.01
    assert cfg.gate.min_speedup == 1.5
    assert cfg.precisions == ("fp32", "bf16")


def test_yaml_file_then_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: 4\nregistry:\n  model_name: other\n")
    cfg = load_config(f, ["train.epochs=6"])
    assert cfg.train.epochs == 6 and cfg.registry.model_name == "other"


@pytest.mark.parametrize("override, words", [
    (["train.epochz=3"], "unknown key 'train.epochz'"),
    (["train.epochs=three"], "train.epochs must be int"),
    (["train.epochs=0"], "train.epochs must be positive"),
    (["precisions=fp32,int4"], "unknown precision 'int4'"),
    (["gate.min_accuracy=2"], "gate.min_accuracy"),
    (["noequals"], "key=value"),
])
def test_bad_config_names_the_problem(override, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.").replace("(", r"\(")):
        load_config(overrides=override)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_with_precisions_validates():
    assert with_precisions(Config(), "fp32, fp16").precisions == ("fp32", "fp16")
    with pytest.raises(ConfigError):
        with_precisions(Config(), "fp32,fp64")


def test_flat_dict_is_dotted():
    flat = Config().as_flat_dict()
    assert flat["train.lr"] == 3e-3 and flat["gate.min_speedup"] == 1.0 and flat["precisions"] == "fp32,bf16,fp16"


def test_fp32_baseline_is_required():
    with pytest.raises(ConfigError, match="must include fp32"):
        load_config(overrides=["precisions=bf16,fp16"])


@pytest.mark.parametrize("overrides, message", [
    (["precisions=fp32,bf16", "train.init_scale=1024"], "bf16 needs no loss scaling"),
    (["precisions=fp32,fp64"], "unknown precision 'fp64'"),
    (["train.scheduler=linear"], "train.scheduler must be none or cosine"),
    (["gate.selection=cheapest"], "gate.selection must be fastest, most-accurate or a precision name"),
    (["precisions=fp32,bf16", "gate.selection=fp16"], "do not train it"),
    (["gate.min_agreement=1.5"], "gate.min_agreement must be between 0 and 1"),
    (["gate.ci_level=0.2"], "gate.ci_level"),
    (["gate.bootstrap_samples=10"], "gate.bootstrap_samples"),
    (["gate.power=1.0"], "gate.power must be between 0 and 1"),
    (["gate.require_power=true", "gate.mcnemar_alpha=0"], "gate.require_power needs gate.mcnemar_alpha above 0"),
    (["sweep.batch_sizes=64,x"], "sweep.batch_sizes must be int"),
    (["sweep.noise_seeds=1"], "sweep.noise_seeds must be 2 or more"),
    (["sweep.precisions=fp32,int8"], "sweep.precisions: choose from"),
    (["precisions=fp32,fp8", "train.batch_size=100"], "train.batch_size 100 is no multiple of 16, which fp8 needs"),
])
def test_invalid_settings_are_refused_when_read(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


@pytest.mark.parametrize("precisions, message", [("fp32,fp8", "fp8 training needs a CUDA GPU"),
                                                 ("fp32,tf32", "tf32 is a CUDA matmul mode")])
def test_modes_this_device_cannot_run_are_refused_at_the_entry(monkeypatch, precisions, message):
    """Reading the config touches no device; the entry point's device check refuses what cannot run here."""
    import torch

    from flows.common import resolve

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = load_config(overrides=[f"precisions={precisions}"])  # read: fine
    assert cfg.precisions == tuple(precisions.split(","))
    with pytest.raises(ConfigError, match=message):
        resolve(precisions=precisions, overrides={"train.device": "cpu"})


def test_reading_a_config_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; from pipeline.core.config_load import load_config; load_config(overrides=['train.epochs=3']);"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_overrides_may_be_a_mapping_with_typed_values():
    cfg = load_config(overrides={"train.epochs": 4, "precisions": "fp32,bf16", "gate.min_speedup": "1.5"})
    assert cfg.train.epochs == 4 and cfg.precisions == ("fp32", "bf16") and cfg.gate.min_speedup == 1.5


def test_fp16_scaler_settings_with_fp16_are_accepted():
    assert load_config(overrides=["precisions=fp32,fp16", "train.init_scale=1024"]).train.init_scale == 1024


def test_gate_selection_policies_and_sweep_lists_are_read():
    cfg = load_config(overrides=["precisions=fp32,bf16", "gate.selection=bf16", "sweep.batch_sizes=64,256"])
    assert cfg.gate.selection == "bf16" and cfg.sweep.batch_sizes == (64, 256)
    assert load_config(overrides=["gate.selection=most-accurate"]).gate.selection == "most-accurate"
