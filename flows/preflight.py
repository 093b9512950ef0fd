"""Before a run trains: the tracking store answers, and what dead runs left behind is cleared away."""
from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline.core.config import Config
from pipeline.tracking import owners, registry, store


@task(name="check-tracking-store", cache_policy=NO_CACHE)
def check_tracking_store(cfg: Config) -> None:
    """An unreachable store is exit 6 before any training. Runs that a process of this host left RUNNING
    when it died (SIGKILL, or a tracking server that vanished under it) are marked KILLED, and a version
    whose registration such a run cut short is deleted."""
    store.preflight()
    stale = owners.abandoned_runs([cfg.registry.experiment, cfg.monitor.experiment])
    if not stale:
        return
    owners.mark_killed(stale)
    deleted = [v for r in stale for v in registry.delete_unfinished(cfg.registry.model_name, r.info.run_id)]
    get_run_logger().warning("marked %d run(s) KILLED that dead processes left RUNNING (%s)%s", len(stale),
                             ", ".join(r.info.run_id for r in stale),
                             f"; deleted their unfinished version(s) {', '.join(deleted)}" if deleted else "")
