"""The node record: the target as a whole (process figures, loops, GC, tracemalloc)."""

from __future__ import annotations

import platform
import sys
import threading
import time
import tracemalloc
from typing import Any

from vmtop._version import __version__
from vmtop.agent.collector import Collector
from vmtop.records import GenGC, LoopStats, NodeInfo

_START = time.monotonic()


_CREATED: list[float] = []


def process_uptime() -> float:
    """Seconds since the process started (psutil, read once), else since the agent loaded.

    Every /proc read releases the GIL, and getting it back behind a CPU-bound loop costs up
    to a switch interval: the agent keeps its system calls per refresh few."""
    if not _CREATED:
        try:
            import psutil

            _CREATED.append(psutil.Process().create_time())
        except Exception:
            return time.monotonic() - _START
    return max(0.0, time.time() - _CREATED[0])


def gc_figures(collector: Collector) -> tuple[tuple[GenGC, ...], float | None]:
    watcher = collector.gc
    if watcher is None:
        return (), None
    try:
        stats: Any = watcher.snapshot()
    except Exception:
        return (), None
    gens = tuple(
        GenGC(
            collections=g.collections,
            collected=g.collected,
            uncollectable=g.uncollectable,
            pause_total=g.pause_total_s,
            pause_max=g.pause_max_s,
            pause_p50=g.pause_p50_s,
            pause_p99=g.pause_p99_s,
        )
        for g in stats.generations
    )
    return gens, stats.gc_share


def node_info(collector: Collector, loops: list[LoopStats], tasks: int) -> NodeInfo:
    cpu, rss = collector.process_figures()
    gens, share = gc_figures(collector)
    tracing = tracemalloc.is_tracing()
    return NodeInfo(
        pid=_pid(),
        argv=tuple(sys.argv),
        python=platform.python_version(),
        implementation=platform.python_implementation(),
        uptime=process_uptime(),
        cpu_percent=cpu,
        rss=rss,
        threads=sum(1 for t in threading.enumerate() if not getattr(t, "_vmtop_agent", False)),
        tasks=tasks,
        loops=tuple(loops),
        gc=gens,
        gc_share=share,
        tracemalloc=tracing,
        tracemalloc_bytes=tracemalloc.get_traced_memory()[0] if tracing else None,
        agent_version=__version__,
        attached_for=time.monotonic() - collector.attached_at if collector.clients else 0.0,
        clients=collector.clients,
        dropped_frames=collector.dropped_frames,
    )


def _pid() -> int:
    import os

    return os.getpid()
