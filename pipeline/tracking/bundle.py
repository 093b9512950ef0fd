"""The model bundle: the one format mpops stores a trained model in, written here and read here only.

A folder of two files: `weights.pt` (the state dict, CPU tensors, loaded with weights_only=True:
data, never code) and `meta.json` (precision, model spec, feature columns, classes, the categorical
encoder and the image shape where the data has them). The registered
pyfunc model and the fp32 twin of the monitoring reference are both bundles.

A model built by a factory of the user's own (pipeline.core.factory) carries that factory's source
in `code/`: the file of a `file.py:build` reference, which meta.json then names relative to the
bundle, or the package of a `package.module:build` one that is not installed, put on sys.path
when the bundle is read. The bundle loads wherever mpops is installed, without the user's folder.
"""
from __future__ import annotations

import json
import logging
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.core.device import resolve_device, serving_precision
from pipeline.core.encoding import CategoricalEncoder
from pipeline.core.factory import CODE_DIR, is_file_reference, source_to_ship, split_reference
from pipeline.core.models import ModelSpec, build_model
from pipeline.core.precision import PrecisionPolicy, make_policy

WEIGHTS, META = "weights.pt", "meta.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bundle:
    model: torch.nn.Module  # in eval mode, on this machine's device, converted for `policy`
    policy: PrecisionPolicy  # the trained precision, or its serving fallback where allowed and this device lacks it
    trained_precision: str
    spec: ModelSpec
    feature_columns: tuple[str, ...]
    classes: tuple[Any, ...]
    encoder: CategoricalEncoder | None = None  # one-hot encoding of the categorical input columns
    image_shape: tuple[int, int, int] | None = None  # (channels, height, width) of an image model's input

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The columns the model takes from a caller, before encoding."""
        return self.encoder.input_columns if self.encoder is not None else self.feature_columns

    @property
    def served_precision(self) -> str:
        return self.policy.name


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def write_bundle(folder: Path, model: torch.nn.Module, precision: str, spec: ModelSpec,
                 feature_columns: tuple[str, ...], classes: tuple[Any, ...],
                 encoder: CategoricalEncoder | None = None, image_shape: tuple[int, ...] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / WEIGHTS)
    meta = {"precision": precision, "spec": {**asdict(spec), "kind": _ship_source(folder, spec.kind)},
            "feature_columns": list(feature_columns), "classes": [_plain(c) for c in classes],
            "encoder": encoder.to_dict() if encoder else None,
            "image_shape": list(image_shape) if image_shape else None}
    (folder / META).write_text(json.dumps(meta))
    return folder


def _ship_source(folder: Path, model: str) -> str:
    """Copy a factory's source into the bundle; the reference the bundle is read with."""
    source = source_to_ship(model)
    if source is None:
        return model
    code = folder / CODE_DIR
    code.mkdir(exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, code / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                        dirs_exist_ok=True)
    else:
        shutil.copy2(source, code / source.name)
    return f"{CODE_DIR}/{source.name}:{split_reference(model)[1]}" if is_file_reference(model) else model


def read_bundle(folder: Path, device: str = "auto", allow_fallback: bool = False) -> Bundle:
    """The bundle on this machine's device, in its trained precision; in the mode's serving fallback only with
    `allow_fallback`, and then with a warning (the caller reports `served_precision`)."""
    meta = json.loads((Path(folder) / META).read_text())
    where = resolve_device(device)
    precision = serving_precision(meta["precision"], where, allow_fallback)
    if precision != meta["precision"]:
        log.warning("serving a model trained in %s in %s: this device (%s) cannot run %s",
                    meta["precision"], precision, where.type, meta["precision"])
    policy = make_policy(precision, where)
    code = str(Path(folder) / CODE_DIR)
    if Path(code).is_dir() and not is_file_reference(meta["spec"]["kind"]) and code not in sys.path:
        sys.path.insert(0, code)  # the shipped package of a package.module:build factory
    model = build_model(ModelSpec(**meta["spec"]), base=Path(folder))
    model.load_state_dict(torch.load(Path(folder) / WEIGHTS, map_location="cpu", weights_only=True))
    model = policy.convert_module(model.to(where)).eval()
    encoder = CategoricalEncoder.from_dict(meta["encoder"]) if meta.get("encoder") else None
    shape = tuple(meta["image_shape"]) if meta.get("image_shape") else None
    return Bundle(model, policy, meta["precision"], ModelSpec(**meta["spec"]), tuple(meta["feature_columns"]),
                  tuple(meta["classes"]), encoder, shape)
