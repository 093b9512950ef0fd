"""The run key: equal exactly when data, code, resolved config, torch version and device kind are."""
from __future__ import annotations

from pathlib import Path

from pipeline.core.config import Config, with_data_path
from pipeline.core.config_load import load_config
from pipeline.core.runkey import model_source_hash, run_key
from pipeline.core.stages import Stages

ROOT = Path(__file__).resolve().parents[2]


def _key(cfg: Config, md5: str = "abc.dir", torch_version: str = "2.13.0+cpu", device: str = "cpu",
         root: Path = ROOT) -> str:
    return run_key(cfg, root, md5, torch_version, device)[0]


def test_the_same_inputs_give_the_same_key_wherever_the_data_lies():
    cfg = Config()
    assert _key(cfg) == _key(Config())
    assert _key(with_data_path(cfg, "/elsewhere/data")) == _key(cfg)  # the md5 names the data, not its path


def test_each_input_changes_the_key():
    cfg = Config()
    base = _key(cfg)
    assert _key(cfg, md5="other.dir") != base
    assert _key(load_config(overrides=["train.lr=0.001"])) != base
    assert _key(load_config(overrides=["probe.steps=5"])) != base
    assert _key(cfg, torch_version="2.14.0+cpu") != base
    assert _key(cfg, device="cuda:NVIDIA H100 80GB HBM3") != base


def test_what_is_hashed_is_kept_for_explaining_a_changed_key():
    _, parts = run_key(Config(), ROOT, "abc.dir", "2.13.0+cpu", "cpu")
    assert parts["data.md5"] == "abc.dir" and parts["device"] == "cpu"
    assert parts["code.commit"] and "data.path" not in parts["config"]
    assert len(parts["config"]["validation.suite.sha256"]) == 64


def test_a_user_model_file_is_hashed_by_its_bytes(tmp_path):
    model = tmp_path / "net.py"
    model.write_text("def build(spec, n, params):\n    return None\n")
    first = model_source_hash("net.py:build", tmp_path)
    assert first == model_source_hash(f"{model}:build", Path("/"))
    model.write_text("def build(spec, n, params):\n    return 1\n")
    assert model_source_hash("net.py:build", tmp_path) != first
    assert model_source_hash("mlp", tmp_path) == ""  # a zoo model is the package's own code
    assert model_source_hash("missing.py:build", tmp_path) == "missing"
    assert len(model_source_hash("json:loads", tmp_path)) == 64  # a module reference: its source file


def test_stages_add_up_and_split_training_from_overhead():
    ticks = iter([0.0, 2.0, 2.0, 7.0, 7.0, 8.0])
    st = Stages(clock=lambda: next(ticks))
    with st.stage("validation"):
        pass
    with st.stage("train.fp32"):
        pass
    with st.stage("validation"):
        pass
    assert st.seconds == {"validation": 3.0, "train.fp32": 5.0}
    assert st.productive_s() == 5.0 and st.overhead_s(10.0) == 5.0
    assert st.metrics() == {"time.validation_s": 3.0, "time.train.fp32_s": 5.0}
    assert st.line(10.0).endswith("wall 10.0, of which fixed overhead 5.0 (50%)")


def test_only_a_process_first_command_counts_the_process_age_as_imports(monkeypatch):
    """A test or a notebook that calls the CLI twice: the second command imported nothing."""
    from pipeline.core import stages

    monkeypatch.setattr(stages, "_COUNTED", [])
    monkeypatch.setattr(stages, "process_age_s", lambda: 4.5)
    assert stages.command_age_s() == 4.5
    assert stages.command_age_s() == 0.0
