"""On-demand profiling jobs in the target: sampled stacks, calls, allocations, GC for N seconds.

Ops (see :mod:`vmtop.protocol`)::

    job_start  {"kind": "sample"|"calls"|"allocations"|"gc", "duration": S, ...options}
               -> {"id", "kind", "duration"}
    job_status {"id", "wait": S} -> {"state", "elapsed", "duration", "progress", "detail", ...}
               (``wait`` up to 2 s: answer as soon as the job ends, or after S seconds)
    job_cancel {"id"} -> status (the job ends early; its result is still made)
    job_result {"id", "chunk": i} -> {"meta", "chunk", "chunks", "size", "data": base64}

Rules: one job of a kind at a time (a second one is refused as ``busy``); each job runs on its
own agent thread and leaves the target as it found it (profile hook removed, tracemalloc
stopped unless it was on before, the GIL switch interval restored, its thread gone). A job
whose client disconnects is cancelled. A finished result is kept until the next job of its
kind or ``RESULT_TTL`` seconds, whichever comes first: memory stays bounded.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import sys
import threading
import time
import tracemalloc
import weakref
from collections.abc import Callable
from typing import Any

from vmtop import job_payloads as payloads
from vmtop import protocol as P

log = logging.getLogger("vmtop.agent")

JOB_OPS = ("job_start", "job_status", "job_cancel", "job_result")
KINDS = ("sample", "calls", "allocations", "gc")
OPTIONS: dict[str, frozenset[str]] = {
    "sample": frozenset(("rate", "switch_interval")),
    "calls": frozenset(("thread",)),
    "allocations": frozenset(("depth", "growth")),
    "gc": frozenset(),
}
MAX_DURATION = 3600.0
RESULT_TTL = 600.0
ENABLE_TIMEOUT = 5.0  # seconds a loop may take to run the callback that enables cProfile
DEFAULT_DEPTH = 25  # tracemalloc frames per traceback, as vmtop.allocations (cost: docs/memory.md)
MAX_DEPTH = 1000

_VMTOP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_PROFILERS_DIR = os.path.join(os.path.dirname(_VMTOP_DIR.rstrip(os.sep)), "profilers") + os.sep
_AGENT_CODE_DIR = os.path.join(_VMTOP_DIR, "agent") + os.sep
# Agent code that wraps the program's own calls on the program's threads.
_WRAPPER_FILES = frozenset(
    os.path.join(_VMTOP_DIR, "agent", name) for name in ("step_hooks.py", "mailbox.py")
)
_PROFILER_BUILTINS = frozenset(
    (
        "<method 'enable' of '_lsprof.Profiler' objects>",
        "<method 'disable' of '_lsprof.Profiler' objects>",
    )
)


# The code that runs on the agent's threads or as its hooks (vmtop/demo and the like are
# programs: they stay in reports), and the launcher of `vmtop run` (at the root of stacks).
AGENT_PREFIXES = (
    _AGENT_CODE_DIR,
    _PROFILERS_DIR,
    os.path.join(_VMTOP_DIR, "cli") + os.sep,
    *(
        os.path.join(_VMTOP_DIR, name)
        for name in (
            "__init__.py",
            "__main__.py",
            "protocol.py",
            "records.py",
            "job_payloads.py",
            "paths.py",
        )
    ),
    tracemalloc.__file__,
)


def agent_file(path: str) -> bool:
    """True for the agent's own code (its frames and allocations are not the program's)."""
    return path.startswith(AGENT_PREFIXES)


# tracemalloc.stop() races with a thread that is inside tracemalloc's raw-memory hook without
# the GIL (CPython gh-128679: a crash, fixed in 3.12.9 and 3.13.2, never in 3.11). zlib
# allocates that way while it compresses with the GIL released, so the agent never compresses
# a payload while it starts or stops tracemalloc. (The program's own threads can still race;
# docs/live-profiles.md says so.)
RAW_ALLOCATIONS = threading.Lock()


class Refused(P.ProtocolError):
    def __init__(self, message: str) -> None:
        super().__init__("refused", message)


class Job:
    def __init__(self, job_id: int, kind: str, duration: float, opts: dict[str, Any], owner: int):
        self.id = job_id
        self.kind = kind
        self.duration = duration
        self.opts = opts
        self.owner = owner
        self.state = "starting"  # -> running -> (stopping) -> done | failed
        self.error: str | None = None
        self.stopped_early = False
        self.started = time.monotonic()
        self.finished: float | None = None
        self.stop = threading.Event()
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        self.meta: dict[str, Any] = {}
        self.payload = b""
        self.detail: Callable[[], dict[str, Any]] = dict
        self.on_cancel: list[Callable[[], None]] = []
        self.restore_notes: list[str] = []

    def cancel(self) -> None:
        """End the job early (its result is still made from what was measured)."""
        if self.state not in ("starting", "running"):
            return
        self.stopped_early = True
        self.stop.set()
        for callback in self.on_cancel:
            callback()

    def measuring(self) -> None:
        """The measurement has begun (hooks in place): state "running", clock from now."""
        self.started = time.monotonic()
        self.state = "running"

    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.monotonic()
        return end - self.started

    def wait(self) -> None:
        """Sleep until the job's duration is up or it is cancelled."""
        self.stop.wait(max(0.0, self.duration - self.elapsed()))

    def status(self) -> dict[str, Any]:
        elapsed = self.elapsed()
        try:
            detail = self.detail()
        except Exception:
            detail = {}
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "elapsed": elapsed,
            "duration": self.duration,
            "progress": min(1.0, elapsed / self.duration) if self.duration else 1.0,
            "stopped_early": self.stopped_early,
            "error": self.error,
            "detail": detail,
        }


class Jobs:
    """The jobs of one agent (one per collector)."""

    def __init__(self, collector: Any) -> None:
        self.collector = collector
        self.jobs: dict[int, Job] = {}
        self._seq = 0
        self._lock = threading.Lock()

    # -- ops ---------------------------------------------------------------------------------
    def handle(self, op: str, args: dict[str, Any], owner: int) -> dict[str, Any]:
        self._expire()
        if op == "job_start":
            return self.start(args, owner)
        job = self._job(args)
        if op == "job_status":
            wait = args.get("wait", 0)
            if not isinstance(wait, int | float) or isinstance(wait, bool) or not 0 <= wait <= 2:
                raise P.ProtocolError("bad_request", "'wait' must be 0 to 2 seconds")
            if wait:
                job.done.wait(wait)  # long poll: answers at once when the job ends
            return job.status()
        if op == "job_cancel":
            job.cancel()
            return job.status()
        if op == "job_result":
            return self.result(job, args)
        raise P.ProtocolError("unknown_op", f"unknown op {op!r}")

    def start(self, args: dict[str, Any], owner: int) -> dict[str, Any]:
        kind = args.get("kind")
        if kind not in KINDS:
            raise P.ProtocolError("bad_request", f"'kind' must be one of {', '.join(KINDS)}")
        duration = args.get("duration")
        if (
            not isinstance(duration, int | float)
            or isinstance(duration, bool)
            or not 0 < duration <= MAX_DURATION
        ):
            raise P.ProtocolError(
                "bad_request", f"'duration' must be a number of seconds in (0, {MAX_DURATION:g}]"
            )
        opts = {k: v for k, v in args.items() if k not in ("kind", "duration")}
        unknown = sorted(set(opts) - OPTIONS[kind])
        if unknown:
            allowed = ", ".join(sorted(OPTIONS[kind])) or "none"
            raise P.ProtocolError(
                "bad_request", f"unknown {kind} option {unknown[0]!r} (options: {allowed})"
            )
        body = _BODIES[kind]
        with self._lock:
            for other in self.jobs.values():
                if other.kind == kind and other.state in ("starting", "running", "stopping"):
                    raise P.ProtocolError(
                        "busy", f"a {kind} job (id {other.id}) is already running in this target"
                    )
            # One finished result per kind is kept: a new job drops the previous one.
            for key in [k for k, j in self.jobs.items() if j.kind == kind]:
                del self.jobs[key]
            self._seq += 1
            job = Job(self._seq, kind, float(duration), opts, owner)
            self.jobs[job.id] = job
        prepare = _PREPARE.get(kind)
        try:
            if prepare is not None:
                prepare(job, self.collector)  # validate options, refuse early, in this thread
        except BaseException:
            with self._lock:
                self.jobs.pop(job.id, None)
            raise
        thread = threading.Thread(
            target=self._run, args=(job, body), name=f"vmtop-job-{kind}-{job.id}", daemon=True
        )
        thread._vmtop_agent = True  # type: ignore[attr-defined]
        job.thread = thread
        thread.start()
        return {"id": job.id, "kind": kind, "duration": job.duration}

    def result(self, job: Job, args: dict[str, Any]) -> dict[str, Any]:
        if job.state not in ("done", "failed"):
            raise P.ProtocolError("busy", f"job {job.id} is still {job.state}")
        if job.thread is not None:
            job.thread.join(2.0)  # the thread is on its last line: the count is back after this
        if job.state == "failed":
            raise P.ProtocolError("internal", f"{job.kind} job failed: {job.error}")
        chunk = args.get("chunk", 0)
        count = payloads.chunks(job.payload)
        if not isinstance(chunk, int) or isinstance(chunk, bool) or not 0 <= chunk < count:
            raise P.ProtocolError("bad_request", f"'chunk' must be an integer in [0, {count})")
        size = payloads.CHUNK_BYTES
        data = job.payload[chunk * size : (chunk + 1) * size]
        return {
            "id": job.id,
            "kind": job.kind,
            "meta": job.meta,
            "status": job.status(),
            "chunk": chunk,
            "chunks": count,
            "size": len(job.payload),
            "data": base64.b64encode(data).decode("ascii"),
        }

    def client_left(self, owner: int) -> None:
        """Cancel the jobs of a client that disconnected (their results would be orphans)."""
        with self._lock:
            jobs = [j for j in self.jobs.values() if j.owner == owner]
        for job in jobs:
            job.cancel()

    # -- internals ---------------------------------------------------------------------------
    def _job(self, args: dict[str, Any]) -> Job:
        job_id = args.get("id")
        if not isinstance(job_id, int) or isinstance(job_id, bool):
            raise P.ProtocolError("bad_request", "'id' must be a job id (integer)")
        job = self.jobs.get(job_id)
        if job is None:
            raise P.ProtocolError("not_found", f"no job {job_id} (finished results expire)")
        return job

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            for key, job in list(self.jobs.items()):
                if job.finished is not None and now - job.finished > RESULT_TTL:
                    del self.jobs[key]

    def _run(self, job: Job, body: Callable[[Job, Any], tuple[dict[str, Any], Any]]) -> None:
        try:
            meta, data = body(job, self.collector)
            job.state = "stopping"  # measured and restored; the result is being packed
            meta["duration"] = meta.get("duration", job.elapsed())
            meta["stopped_early"] = job.stopped_early
            meta["restore_notes"] = job.restore_notes
            with RAW_ALLOCATIONS:
                job.payload = payloads.pack(data if data is not None else {})
            job.meta = meta
            job.state = "done"
        except Exception as exc:  # never into the program: reported through job_status
            log.debug("vmtop agent: %s job failed", job.kind, exc_info=True)
            job.error = f"{type(exc).__name__}: {exc}"[:300]
            job.state = "failed"
        finally:
            job.finished = time.monotonic()
            job.done.set()


# -- sampled stacks ----------------------------------------------------------------------------------
def _prepare_sample(job: Job, collector: Any) -> None:
    from profilers.thread_sampler import MAX_RATE, ThreadSampler

    rate = job.opts.get("rate", 100.0)
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 < rate <= MAX_RATE:
        raise P.ProtocolError("bad_request", f"'rate' must be in (0, {MAX_RATE:g}] samples/s")
    switch = job.opts.get("switch_interval", "default")
    kwargs: dict[str, Any] = {}
    if switch != "default":
        if switch is not None and (not isinstance(switch, int | float) or not 0 < switch <= 1):
            raise P.ProtocolError("bad_request", "'switch_interval' must be in (0, 1] s or null")
        kwargs["switch_interval"] = switch
    # The agent's hooks that wrap the program's calls are left out of its stacks.
    sampler = ThreadSampler(float(rate), hide_prefixes=(_AGENT_CODE_DIR,), **kwargs)
    job.opts["_sampler"] = sampler
    job.on_cancel.append(sampler.stop)

    def detail() -> dict[str, Any]:
        result = sampler.result
        elapsed = sampler.elapsed
        return {"ticks": result.ticks, "rate": result.ticks / elapsed if elapsed else 0.0}

    job.detail = detail


def _run_sample(job: Job, collector: Any) -> tuple[dict[str, Any], Any]:
    sampler = job.opts.pop("_sampler")
    job.measuring()
    result = sampler.run(job.duration)  # on this (job) thread, which the sampler skips
    meta = {
        "rate": result.rate,
        "achieved_rate": result.achieved_rate,
        "ticks": result.ticks,
        "duration": result.duration,
        "samples": result.samples,
        "switch_interval": result.switch_interval,
        "sampler_cpu": result.cpu_time,
    }
    return meta, result.to_dict()


# -- calls (cProfile) ----------------------------------------------------------------------------------
def _prepare_calls(job: Job, collector: Any) -> None:
    thread = job.opts.get("thread")
    if thread is not None and not isinstance(thread, str):
        raise P.ProtocolError("bad_request", "'thread' must be a thread name")
    if sys.version_info >= (3, 12):
        if thread is not None:
            raise Refused(
                "on Python 3.12+ cProfile counts calls on every thread at once "
                "(sys.monitoring): a calls profile cannot be limited to one thread"
            )
        tool = sys.monitoring.get_tool(sys.monitoring.PROFILER_ID)
        if tool is not None:
            raise Refused(f"a profiler ({tool}) already runs in the target: stop it first")
        job.opts["_loop"] = None
        job.opts["_scope"] = "all threads"
        return
    job.opts["_loop"] = loop = _pick_loop(collector, thread)
    from vmtop.agent.loops import LoopTimeout, call_in_loop, loop_thread_name

    try:
        hook = call_in_loop(loop, sys.getprofile, ENABLE_TIMEOUT)
    except LoopTimeout:
        raise P.ProtocolError(
            "timeout", f"the loop of thread {loop_thread_name(loop)} is blocked"
        ) from None
    if hook is not None:
        raise Refused(
            f"a profile hook is already set on thread {loop_thread_name(loop)} ({hook!r:.60}): "
            "stop that profiler first (cProfile and pyinstrument cannot run together on 3.11)"
        )
    job.opts["_scope"] = f"thread {loop_thread_name(loop)}"


def _running_loops() -> list[Any]:
    """Every running event loop that owns a task (found through the task registries)."""
    from vmtop.agent.loops import all_tasks_anywhere

    loops: dict[int, Any] = {}
    for task in all_tasks_anywhere():
        try:
            loop = task.get_loop()
        except Exception:
            continue
        if id(loop) not in loops and loop.is_running() and not loop.is_closed():
            loops[id(loop)] = loop
    return list(loops.values())


def _pick_loop(collector: Any, thread: str | None) -> Any:
    from vmtop.agent.loops import loop_thread_id, loop_thread_name

    loops = _running_loops()
    if thread is not None:
        for loop in loops:
            if loop_thread_name(loop) == thread:
                return loop
        names = sorted(t.name for t in threading.enumerate() if not _is_agent(t))
        if thread in names:
            raise Refused(
                f"thread {thread!r} runs no asyncio loop: cProfile only counts calls on the thread "
                "that enables it, which must be a loop thread on Python 3.11 (use a sampled "
                "profile for other threads)"
            )
        raise P.ProtocolError("not_found", f"no thread named {thread!r} (threads: {names})")
    if not loops:
        raise Refused(
            "no running asyncio loop in the target: on Python 3.11 a calls profile needs a loop "
            "thread to run cProfile on (use a sampled profile)"
        )
    main = threading.main_thread().ident
    for loop in loops:
        if loop_thread_id(loop) == main:
            return loop
    if len(loops) == 1:
        return loops[0]
    listed = ", ".join(sorted(loop_thread_name(loop) for loop in loops))
    raise P.ProtocolError("bad_request", f"several loops run ({listed}): choose one with thread")


def _is_agent(thread: threading.Thread) -> bool:
    return bool(getattr(thread, "_vmtop_agent", False))


def _run_calls(job: Job, collector: Any) -> tuple[dict[str, Any], Any]:
    import cProfile

    loop = job.opts["_loop"]
    profiler = cProfile.Profile()
    times: dict[str, float] = {}

    def enable() -> None:
        if loop is not None and sys.getprofile() is not None:
            raise RuntimeError("a profile hook appeared on the loop thread; not starting")
        times["start"] = time.perf_counter()
        profiler.enable()

    def disable() -> None:
        profiler.disable()
        times["end"] = time.perf_counter()

    if loop is None:
        enable()
        job.measuring()
        try:
            job.wait()
        finally:
            disable()
    else:
        from vmtop.agent.loops import call_in_loop

        call_in_loop(loop, enable, ENABLE_TIMEOUT)
        job.measuring()
        try:
            job.wait()
        finally:
            _run_on_loop_until_done(job, loop, disable)
    profiler.create_stats()
    raw: payloads.PstatsDict = profiler.stats  # type: ignore[attr-defined,assignment,unused-ignore]
    stats = _drop_agent_entries(raw)
    duration = times.get("end", time.perf_counter()) - times["start"]
    meta = {"duration": duration, "scope": job.opts["_scope"], "functions": len(stats)}
    return meta, payloads.encode_pstats(stats)


def _run_on_loop_until_done(job: Job, loop: Any, fn: Callable[[], None]) -> None:
    """Run ``fn`` on the loop thread and wait for it however long the loop is blocked (a
    profile hook must never be left behind); give up only when the loop stopped running."""
    done = threading.Event()

    def run() -> None:
        try:
            fn()
        finally:
            done.set()

    job.state = "stopping"
    loop.call_soon_threadsafe(run)
    while not done.wait(0.5):
        if loop.is_closed() or not loop.is_running():
            job.restore_notes.append(
                "the loop stopped before cProfile could be disabled on its thread"
            )
            return


def _drop_agent_entries(stats: payloads.PstatsDict) -> payloads.PstatsDict:
    """Leave out the agent's own functions and the profiler's enable/disable.

    The agent's hooks that wrap the program's calls (the step hook around ``Handle._run``,
    the queue hooks) are spliced out: their callees keep the wrapper's callers. Functions only
    the agent's own code called (its socket and JSON work, seen by cProfile on 3.12+ where it
    counts every thread) are left out with it.
    """
    hidden = {
        key
        for key in stats
        if agent_file(key[0]) or (key[0] == "~" and key[2] in _PROFILER_BUILTINS)
    }
    wrappers = {key for key in hidden if key[0] in _WRAPPER_FILES}

    def outer_callers(key: payloads.PstatsKey, seen: set[payloads.PstatsKey]) -> list[Any]:
        # The callers of a wrapper that are not wrappers themselves, most calls first.
        out = []
        for caller, values in stats[key][4].items():
            if caller in wrappers and caller not in seen:
                seen.add(caller)
                out.extend(outer_callers(caller, seen))
            elif caller not in hidden:
                out.append((values[0], caller))
        return sorted(out, key=lambda item: -item[0])

    removed = hidden - wrappers
    changed = True
    while changed:
        changed = False
        for key, (*_, callers) in stats.items():
            if (
                key not in hidden
                and key not in removed
                and callers
                and all(c in removed for c in callers)
            ):
                removed.add(key)
                changed = True
    out: payloads.PstatsDict = {}
    for key, (cc, nc, tt, ct, callers) in stats.items():
        if key in hidden or key in removed:
            continue
        kept: dict[payloads.PstatsKey, tuple[Any, ...]] = {}
        for caller, values in callers.items():
            if caller in wrappers:
                outer = outer_callers(caller, {caller})
                if outer:  # the wrapper's main caller now calls this function directly
                    _add_edge(kept, outer[0][1], values)
            elif caller not in hidden and caller not in removed:
                _add_edge(kept, caller, values)
        out[key] = (cc, nc, tt, ct, kept)
    return out


def _add_edge(
    edges: dict[payloads.PstatsKey, tuple[Any, ...]],
    caller: payloads.PstatsKey,
    values: tuple[Any, ...],
) -> None:
    previous = edges.get(caller)
    edges[caller] = (
        values if previous is None else tuple(a + b for a, b in zip(previous, values, strict=True))
    )


# -- allocations (tracemalloc) ----------------------------------------------------------------------
def _prepare_allocations(job: Job, collector: Any) -> None:
    depth = job.opts.get("depth", DEFAULT_DEPTH)
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= MAX_DEPTH:
        raise P.ProtocolError("bad_request", f"'depth' must be an integer in [1, {MAX_DEPTH}]")
    growth = job.opts.get("growth", False)
    if not isinstance(growth, bool):
        raise P.ProtocolError("bad_request", "'growth' must be true or false")


def _run_allocations(job: Job, collector: Any) -> tuple[dict[str, Any], Any]:
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


# -- GC ---------------------------------------------------------------------------------------------
def _run_gc(job: Job, collector: Any) -> tuple[dict[str, Any], Any]:
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


def _prepare_gc(job: Job, collector: Any) -> None:
    from profilers.gcwatch import GCWatcher  # noqa: F401  (fails here, not in the job thread)


_PREPARE: dict[str, Callable[[Job, Any], None]] = {
    "sample": _prepare_sample,
    "calls": _prepare_calls,
    "allocations": _prepare_allocations,
    "gc": _prepare_gc,
}
_BODIES: dict[str, Callable[[Job, Any], tuple[dict[str, Any], Any]]] = {
    "sample": _run_sample,
    "calls": _run_calls,
    "allocations": _run_allocations,
    "gc": _run_gc,
}

# -- one Jobs per collector --------------------------------------------------------------------------
_managers: weakref.WeakKeyDictionary[Any, Jobs] = weakref.WeakKeyDictionary()
_managers_lock = threading.Lock()


def manager(collector: Any) -> Jobs:
    with _managers_lock:
        jobs = _managers.get(collector)
        if jobs is None:
            jobs = _managers[collector] = Jobs(collector)
        return jobs


def handle(collector: Any, op: str, args: dict[str, Any], session: Any) -> dict[str, Any]:
    """Serve one job op for the client whose per-connection object is ``session``."""
    return manager(collector).handle(op, args, id(session))


def client_left(collector: Any, session: Any) -> None:
    with contextlib.suppress(Exception):
        jobs = _managers.get(collector)
        if jobs is not None:
            jobs.client_left(id(session))


__all__ = ["JOB_OPS", "KINDS", "Jobs", "client_left", "handle", "manager"]
