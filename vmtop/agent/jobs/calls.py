"""``calls`` jobs: cProfile in the target (CNT / ACC / OWN with callers and callees).

On 3.11 cProfile counts the calls of the thread that enables it, so it is enabled on a loop
thread (``thread`` picks which). On 3.12+ cProfile runs on ``sys.monitoring``, which reports
every thread's calls to one profiler with one stack of open calls: the threads' calls get
mixed up (a loop's functions recorded as called by the agent's parked job thread, and then
left out as the agent's own work). There :class:`~profilers.calls.ThreadCalls` gives each
thread its own cProfile (the program's threads, or the one ``thread`` names; never the
agent's). The agent's own functions are left out of the result and its wrappers spliced out
(:func:`drop_agent_entries`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from profilers.callgraph import PstatsDict, is_profiler_builtin, splice_out
from vmtop import job_payloads as payloads
from vmtop import protocol
from vmtop.agent.jobs.base import WRAPPER_FILES, Job, JobKind, Refused, Result, agent_file

if TYPE_CHECKING:
    from vmtop.agent.collector import Collector

ENABLE_TIMEOUT = 5.0  # seconds a loop may take to run the callback that enables cProfile


def prepare(job: Job, collector: Collector) -> None:
    thread = job.opts.get("thread")
    if thread is not None and not isinstance(thread, str):
        raise protocol.ProtocolError("bad_request", "'thread' must be a thread name")
    if sys.version_info >= (3, 12):
        tool = sys.monitoring.get_tool(sys.monitoring.PROFILER_ID)
        if tool is not None:
            raise Refused(f"a profiler ({tool}) already runs in the target: stop it first")
        if thread is not None:
            names = sorted(t.name for t in threading.enumerate() if not _is_agent(t))
            if thread not in names:
                raise protocol.ProtocolError(
                    "not_found", f"no thread named {thread!r} (threads: {names})"
                )
        job.opts["_loop"] = None
        job.opts["_scope"] = "all threads" if thread is None else f"thread {thread}"
        return
    job.opts["_loop"] = loop = _pick_loop(collector, thread)
    from vmtop.agent.loops import LoopTimeout, call_in_loop, loop_thread_name

    try:
        hook = call_in_loop(loop, sys.getprofile, ENABLE_TIMEOUT)
    except LoopTimeout:
        raise protocol.ProtocolError(
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


def _pick_loop(collector: Collector, thread: str | None) -> Any:
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
        raise protocol.ProtocolError("not_found", f"no thread named {thread!r} (threads: {names})")
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
    raise protocol.ProtocolError(
        "bad_request", f"several loops run ({listed}): choose one with thread"
    )


def _is_agent(thread: threading.Thread) -> bool:
    return bool(getattr(thread, "_vmtop_agent", False))


def run(job: Job, collector: Collector) -> Result:
    if sys.version_info >= (3, 12):
        return _run_per_thread(job)
    import cProfile

    loop = job.opts["_loop"]
    profiler = cProfile.Profile()
    times: dict[str, float] = {}

    def enable() -> None:
        if sys.getprofile() is not None:
            raise RuntimeError("a profile hook appeared on the loop thread; not starting")
        times["start"] = time.perf_counter()
        profiler.enable()

    def disable() -> None:
        profiler.disable()
        times["end"] = time.perf_counter()

    from vmtop.agent.loops import call_in_loop

    call_in_loop(loop, enable, ENABLE_TIMEOUT)
    job.measuring()
    try:
        job.wait()
    finally:
        _run_on_loop_until_done(job, loop, disable)
    profiler.create_stats()
    raw: PstatsDict = profiler.stats  # type: ignore[attr-defined,assignment,unused-ignore]
    stats = drop_agent_entries(raw)
    duration = times.get("end", time.perf_counter()) - times["start"]
    meta = {"duration": duration, "scope": job.opts["_scope"], "functions": len(stats)}
    return meta, payloads.encode_pstats(stats)


def _run_per_thread(job: Job) -> Result:
    """3.12+: one cProfile per program thread (or for the thread ``thread`` names), enabled
    and disabled from the job's thread (``sys.monitoring`` is process-wide)."""
    from profilers.calls import ThreadCalls

    wanted = job.opts.get("thread")

    def include(thread: threading.Thread | None) -> bool:
        if thread is not None and _is_agent(thread):
            return False
        return wanted is None or (thread is not None and thread.name == wanted)

    recorder = ThreadCalls(include)
    start = time.perf_counter()
    recorder.enable()
    job.measuring()
    try:
        job.wait()
    finally:
        recorder.disable()
        end = time.perf_counter()
    stats = drop_agent_entries(recorder.stats())
    meta = {
        "duration": end - start,
        "scope": job.opts["_scope"],
        "functions": len(stats),
        "threads": recorder.thread_names(),
    }
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


def drop_agent_entries(stats: PstatsDict) -> PstatsDict:
    """Leave out the agent's own functions and the profiler's enable/disable.

    The agent's hooks that wrap the program's calls (the step hook around ``Handle._run``,
    the queue hooks) are spliced out: their callees keep the wrapper's callers. Functions only
    the agent's own code called (its socket and JSON work, seen by cProfile on 3.12+ where it
    counts every thread) are left out with it.
    """
    hidden = {key for key in stats if agent_file(key[0]) or is_profiler_builtin(key)}
    wrappers = {key for key in hidden if key[0] in WRAPPER_FILES}
    return splice_out(stats, hidden, wrappers)


KIND = JobKind("calls", frozenset(("thread",)), prepare, run)
