"""Models of the user's own: `train.model` as a factory reference, `package.module:build` or `path/file.py:build`.

The factory is called as `build(input_spec, n_classes, params)` with `params` = `train.model_params`
and returns an `nn.Module` mapping a float32 batch of shape (batch, input_spec.n_features) to logits
of shape (batch, n_classes). Rows always reach the model flat; image data is flattened in C, H, W
order, so a convolutional model starts with `nn.Unflatten(1, (channels, height, width))`. The
pipeline wraps the module in its own standardisation layer, as for the zoo models.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pipeline.core.config import MODEL_ZOO
from pipeline.core.errors import ConfigError

CODE_DIR = "code"  # a bundle's copy of the factory's source


@dataclass(frozen=True)
class InputSpec:
    """What a model reads: `n_features` float32 values a row; for images, channels x height x width of them."""

    n_features: int
    channels: int | None = None
    height: int | None = None
    width: int | None = None


def is_zoo(model: str) -> bool:
    return model in MODEL_ZOO


def is_file_reference(model: str) -> bool:
    return model.rpartition(":")[0].endswith(".py")


def split_reference(model: str) -> tuple[str, str]:
    """`target:attribute`, or a ConfigError saying what a reference looks like."""
    target, sep, attribute = model.rpartition(":")
    if not sep or not target or not attribute.isidentifier():
        raise ConfigError(f"train.model must be {', '.join(MODEL_ZOO)}, or a factory reference "
                          f"package.module:build or path/to/file.py:build; got {model!r}")
    return target, attribute


def resolve_file_reference(model: str, folders: tuple[Path, ...]) -> str:
    """A relative `file.py:build` as an absolute one: the first of `folders` that holds the file."""
    if is_zoo(model):
        return model
    target, attribute = split_reference(model)
    if not is_file_reference(model):
        return model
    path = Path(target).expanduser()
    candidates = [path] if path.is_absolute() else [f / path for f in folders]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        where = ", ".join(str(c.parent) for c in candidates)
        raise ConfigError(f"train.model={model}: no file {target} (looked in {where})")
    return f"{found.resolve()}:{attribute}"


def _load_file(path: Path) -> Any:
    # One module per file content: a factory file edited between two runs of one process is read again.
    digest = hashlib.md5(path.read_bytes()).hexdigest()[:12]
    name = f"mpops_model_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_factory(model: str, base: Path | None = None) -> Callable[..., Any]:
    """The callable a reference names; a relative file reference is read from `base` (a bundle's folder)."""
    target, attribute = split_reference(model)
    try:
        if is_file_reference(model):
            path = Path(target) if Path(target).is_absolute() or base is None else base / target
            if not path.is_file():
                raise ConfigError(f"train.model={model}: no file {path}")
            module = _load_file(path)
        else:
            module = importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001  whatever the user's module raises on import
        raise ConfigError(f"train.model={model}: importing {target} failed: {type(e).__name__}: {e}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ConfigError(f"train.model={model}: {target} has no callable {attribute!r}")
    return factory


def build_user_module(model: str, spec: InputSpec, n_classes: int, params: dict, base: Path | None = None):
    """The factory's module, or a ConfigError naming the factory and what went wrong."""
    from torch import nn

    factory = load_factory(model, base)
    try:
        net = factory(spec, n_classes, dict(params))
    except Exception as e:  # noqa: BLE001  the user's code may raise anything
        raise ConfigError(f"train.model={model}: the factory raised {type(e).__name__}: {e}") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"train.model={model}: the factory returned {type(net).__name__}, not a torch.nn.Module")
    return net


def check_output(model: str, net: Any, spec: InputSpec, n_classes: int, rows: int = 2) -> None:
    """A forward pass of a tiny batch on the CPU: the output must be (batch, n_classes) logits."""
    import torch

    try:
        with torch.no_grad():
            out = net.eval()(torch.zeros(rows, spec.n_features))
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"train.model={model}: a forward pass on a ({rows}, {spec.n_features}) float32 batch "
                          f"raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if shape != (rows, n_classes):
        got = f"shape {shape}" if shape is not None else type(out).__name__
        raise ConfigError(f"train.model={model}: the model returns {got} for a batch of {rows}; "
                          f"expected ({rows}, {n_classes}) logits, one per class")


def check_factory(model: str, spec: InputSpec, n_classes: int, params: dict) -> None:
    """Before any training: the factory imports, returns a module, and that module's output has the right shape."""
    if not is_zoo(model):
        check_output(model, build_user_module(model, spec, n_classes, params), spec, n_classes)


def source_to_ship(model: str) -> Path | None:
    """The file or package folder a reference's code lives in, when it is not an installed package."""
    if is_zoo(model):
        return None
    target, _ = split_reference(model)
    if is_file_reference(model):
        return Path(target)
    top = target.split(".")[0]
    found = importlib.util.find_spec(top)
    if found is None or found.origin in (None, "built-in", "frozen"):
        return None
    origin = Path(found.origin)
    if any(part in ("site-packages", "dist-packages") for part in origin.parts):
        return None  # installed: the environment's requirements bring it
    return origin.parent if origin.name == "__init__.py" else origin


def source_digest(model: str) -> str:
    """md5 of the factory's shipped source ("" for the zoo and installed packages): an edited model file is
    another run, whose checkpoints `--resume` must not continue."""
    source = source_to_ship(model)
    if source is None or not source.exists():
        return ""
    files = sorted(source.rglob("*.py")) if source.is_dir() else [source]
    h = hashlib.md5()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def count_flops(net: Any, n_features: int) -> int:
    """Forward FLOPs per sample of a module, counted by torch on one row (matmuls and convolutions)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            net.eval()(torch.zeros(1, n_features))
    except Exception:  # noqa: BLE001  the figure is informative only
        return 0
    finally:
        net.train()
    return int(counter.get_total_flops())
