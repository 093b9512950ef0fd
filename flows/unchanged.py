"""Nothing changed, nothing trained: the run key of this run against the champion's, before any other work.

`mpops run` asks before its flow starts (while Prefect's temporary server boots), so an unchanged nightly
or CI run costs the hashing and one registry call; the training flow asks again (a deployment's run starts there, and another run may
have registered since)."""
from __future__ import annotations

from pathlib import Path

from pipeline.core.config import Config


def this_run_key(cfg: Config, root: Path, data_md5: str | None = None) -> tuple[str, dict]:
    import torch

    from pipeline.core.device import device_label, resolve_device
    from pipeline.core.provenance import dvc_hash
    from pipeline.core.runkey import run_key

    md5 = data_md5 if data_md5 is not None else dvc_hash(cfg.data.path, root)
    return run_key(cfg, root, md5, torch.__version__, device_label(resolve_device(cfg.train.device)))


def champion_unchanged(cfg: Config, key: str) -> str | None:
    """The line to print when the champion carries `key`, else None. An unreachable tracking store is exit 6
    here as it would be in the run."""
    from pipeline.tracking import store
    from pipeline.tracking.runkeys import champion_with_key, unchanged_line

    try:
        version = champion_with_key(cfg.registry.model_name, key)
    except Exception as e:  # MLflow raises its own and requests' errors; only a lost connection is ours
        if store.is_unreachable(e):
            raise store.unreachable_error(e) from None
        raise
    return unchanged_line(version) if version else None


def early_check(cfg: Config, root: Path) -> str | None:
    """Before the flow: the unchanged line, or None to run. Data that cannot be hashed is left to the run,
    which reports it the way it reports any bad data."""
    from pipeline.tracking.store import setup_tracking

    try:
        key, _ = this_run_key(cfg, root)
    except Exception:  # noqa: BLE001  the run's own load and validation name what is wrong
        return None
    setup_tracking(root, cfg.registry.unreachable_after_s)
    return champion_unchanged(cfg, key)
