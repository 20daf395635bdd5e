"""``gc`` jobs: a fresh GC watcher (``gc.callbacks``) for the window."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmtop.agent.jobs.base import Job, JobKind, Result

if TYPE_CHECKING:
    from vmtop.agent.collector import Collector


def run(job: Job, collector: Collector) -> Result:
    """A fresh GC watcher for the window (the collector's one keeps running for the TUI):
    pause percentiles and maximum are then those of the window itself."""
    import gc

    from profilers.gcwatch import GCWatcher

    watcher = GCWatcher()
    enabled_at_start = gc.isenabled()
    watcher.start()
    job.measuring()
    try:
        job.wait()
    finally:
        watcher.stop()  # gc.callbacks is exactly as before
    stats = watcher.snapshot()
    meta = {"duration": stats.wall_s, "enabled_at_start": enabled_at_start}
    return meta, {"stats": stats.to_dict()}


def prepare(job: Job, collector: Collector) -> None:
    from profilers.gcwatch import GCWatcher  # noqa: F401  (fails here, not in the job thread)


KIND = JobKind("gc", frozenset(), prepare, run)
