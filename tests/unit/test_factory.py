"""train.model as a factory reference: how it is found, and the one error line for each way it can be wrong."""
from __future__ import annotations

import textwrap

import pytest
import torch

from pipeline.core.config_load import load_config
from pipeline.core.errors import ConfigError
from pipeline.core.factory import InputSpec, check_factory, load_factory, resolve_file_reference, source_to_ship
from pipeline.core.models import ModelSpec, build_model
from tests.conftest import ROOT

FACTORIES = ROOT / "tests" / "integration" / "factories"
TINY = FACTORIES / "tiny_mlp.py"
SPEC = InputSpec(64)


def test_a_relative_model_file_is_found_beside_the_config_then_in_the_project(tmp_path):
    (tmp_path / "model.py").write_text(TINY.read_text())
    (tmp_path / "mpops.yaml").write_text("train:\n  model: model.py:build\n  model_params: {width: 16}\n")
    cfg = load_config(tmp_path / "mpops.yaml", ["train.model_params.depth=2"])
    assert cfg.train.model == f"{(tmp_path / 'model.py').resolve()}:build"
    assert cfg.train.model_params == {"width": 16, "depth": 2}
    assert cfg.as_flat_dict()["train.model_params.width"] == 16
    from_root = load_config(None, ["train.model=tests/integration/factories/tiny_mlp.py:build"])
    assert from_root.train.model == f"{TINY.resolve()}:build"


@pytest.mark.parametrize("model, message", [
    ("nowhere.py:build", "no file nowhere.py"),
    ("resnet", "factory reference package.module:build or path/to/file.py:build"),
    ("pkg.mod:", "factory reference"),
])
def test_a_bad_reference_is_a_config_error(model, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"train.model={model}"])


def test_model_params_must_be_a_mapping():
    with pytest.raises(ConfigError, match="train.model_params must be a mapping"):
        load_config(None, ["train.model_params=7"])


@pytest.mark.parametrize("attribute, message", [
    ("raises", r"tiny_mlp.py:raises: the factory raised RuntimeError: no GPU of the kind"),
    ("not_a_module", r"tiny_mlp.py:not_a_module: the factory returned str, not a torch.nn.Module"),
    ("wrong_shape", r"tiny_mlp.py:wrong_shape: the model returns shape \(2, 11\) for a batch of 2; "
                    r"expected \(2, 10\)"),
    ("missing", r"tiny_mlp.py:missing: .*tiny_mlp.py has no callable 'missing'"),
])
def test_each_way_a_factory_fails_names_it(attribute, message):
    with pytest.raises(ConfigError, match=message):
        check_factory(f"{TINY}:{attribute}", SPEC, 10, {})


def test_a_module_reference_that_cannot_be_imported_names_it():
    with pytest.raises(ConfigError, match="train.model=no_such_pkg.models:build: importing no_such_pkg.models "
                                          "failed: ModuleNotFoundError"):
        load_factory("no_such_pkg.models:build")


def test_a_module_reference_builds_and_ships_its_package_unless_installed():
    check_factory("tests.integration.factories.tiny_mlp:build", SPEC, 10, {"width": 8})
    assert source_to_ship("tests.integration.factories.tiny_mlp:build") == ROOT / "tests"
    assert source_to_ship("torch.nn:Linear") is None  # installed: its requirements bring it
    assert source_to_ship(f"{TINY}:build") == TINY


def test_a_factory_model_sits_behind_the_standardisation_and_counts_its_flops(tmp_path):
    model_file = tmp_path / "net.py"
    model_file.write_text(textwrap.dedent("""
        from torch import nn
        def build(spec, n_classes, params):
            assert spec.channels == 1 and spec.height == 8 and spec.width == 8
            return nn.Sequential(nn.Unflatten(1, (spec.channels, spec.height, spec.width)),
                                 nn.Conv2d(1, params["c"], 3, padding=1), nn.Flatten(),
                                 nn.Linear(params["c"] * 64, n_classes))
    """))
    spec = ModelSpec(64, 3, 0, 0, f"{model_file}:build", {"c": 4}, (1, 8, 8))
    model = build_model(spec, torch.randn(20, 64).numpy() * 5 + 2)
    assert type(model[0]).__name__ == "Standardize" and model[0].mean.abs().max() > 0.5
    assert model(torch.randn(5, 64)).shape == (5, 3)
    assert ModelSpec(**{**spec.__dict__, "image": [1, 8, 8]}).input_spec == InputSpec(64, 1, 8, 8)
    from pipeline.core.models import with_flops

    assert with_flops(spec, model).flops_per_sample == 2 * (64 * 4 * 9 + 4 * 64 * 3)


def test_an_edited_model_file_is_another_run_for_resume(tmp_path):
    from pipeline.core.checkpoint import run_key
    from pipeline.core.config import DataConfig, TrainConfig
    from pipeline.core.factory import source_digest

    model_file = tmp_path / "net.py"
    model_file.write_text(TINY.read_text())
    cfg = TrainConfig(model=f"{model_file}:build")
    before = run_key(cfg, DataConfig(), "abc", source_digest(cfg.model))
    model_file.write_text(TINY.read_text() + "\n# wider\n")
    assert run_key(cfg, DataConfig(), "abc", source_digest(cfg.model)) != before
    assert source_digest("mlp") == "" and run_key(TrainConfig(), DataConfig(), "abc", "") == \
        run_key(TrainConfig(), DataConfig(), "abc")
