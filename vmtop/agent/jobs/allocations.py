"""``allocations`` jobs: tracemalloc in the target for N seconds, its snapshot(s) shipped as
tables and analysed by the client (``vmtop.jobs_client.allocations``), not here.

tracemalloc is started at ``depth`` frames and stopped again unless the program had it on.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import TYPE_CHECKING, Any

from profilers.alloc_limits import DEFAULT_NFRAME, MAX_NFRAME
from vmtop import job_payloads as payloads
from vmtop import protocol
from vmtop.agent.jobs.base import AGENT_PREFIXES, RAW_ALLOCATIONS, Job, JobKind, Result

if TYPE_CHECKING:
    from vmtop.agent.collector import Collector

# Frames per traceback: the engine's default and tracemalloc's own limit (profilers/alloc_limits).
DEFAULT_DEPTH = DEFAULT_NFRAME
MAX_DEPTH = MAX_NFRAME


def prepare(job: Job, collector: Collector) -> None:
    depth = job.opts.get("depth", DEFAULT_DEPTH)
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= MAX_DEPTH:
        raise protocol.ProtocolError(
            "bad_request", f"'depth' must be an integer in [1, {MAX_DEPTH}]"
        )
    growth = job.opts.get("growth", False)
    if not isinstance(growth, bool):
        raise protocol.ProtocolError("bad_request", "'growth' must be true or false")


def run(job: Job, collector: Collector) -> Result:
    depth = int(job.opts.get("depth", DEFAULT_DEPTH))
    growth = bool(job.opts.get("growth", False))
    was_tracing = tracemalloc.is_tracing()
    if was_tracing:
        used_depth = tracemalloc.get_traceback_limit()
    else:
        with RAW_ALLOCATIONS:
            tracemalloc.start(depth)
        used_depth = depth
    first = None
    try:
        if growth:
            first = _timed_snapshot()
        if was_tracing:
            tracemalloc.reset_peak()  # as vmtop.allocations does (the report says so)
        start_traced = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        job.measuring()
        job.wait()
        window = time.perf_counter() - t0
        last = _timed_snapshot()
        current, peak = tracemalloc.get_traced_memory()
        overhead = tracemalloc.get_tracemalloc_memory()
    finally:
        if not was_tracing:
            with RAW_ALLOCATIONS:
                tracemalloc.stop()
    (traces, pause) = last
    data: dict[str, Any] = {"end": payloads.encode_traces(traces, used_depth)}
    del traces, last
    meta: dict[str, Any] = {
        "duration": window,
        "depth": used_depth,
        "requested_depth": depth,
        "was_tracing": was_tracing,
        "start_traced": start_traced,
        "end_traced": current,
        "peak": peak,
        "tracemalloc_memory": overhead,
        "snapshot_pause": pause,
        "traces": data["end"]["count"],
        "growth": growth,
        "agent_dirs": list(AGENT_PREFIXES),
    }
    if first is not None:
        data["start"] = payloads.encode_traces(first[0], used_depth)
        meta["start_snapshot_pause"] = first[1]
    return meta, data


def _timed_snapshot() -> tuple[list[Any], float]:
    """Raw traces of a fresh snapshot and the seconds it held the GIL to take it."""
    t0 = time.perf_counter()
    snapshot = tracemalloc.take_snapshot()
    pause = time.perf_counter() - t0
    raw = getattr(snapshot.traces, "_traces", None)
    if raw is None:  # pragma: no cover - 3.11-3.13 all keep the raw list there
        raw = [t._trace for t in snapshot.traces]  # type: ignore[attr-defined]
    return list(raw), pause


KIND = JobKind("allocations", frozenset(("depth", "growth")), prepare, run)
