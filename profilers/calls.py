"""Deterministic call counts: cProfile turned into the fprof-style :class:`CallsProfile` model.

cProfile records, per function, the calls (total and primitive, i.e. not recursive), the time
inside it including callees (cumulative, "ACC") and excluding them (inline, "OWN"), and the same
four numbers per caller -> callee edge. That is exactly what fprof's analysis shows, so the model
is the pstats dict itself (:class:`~profilers.callgraph.CallGraph` reads it).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from profilers.callgraph import PstatsDict, filter_stats

try:
    from profilers import _thread_calls
except ImportError:  # built without a C compiler
    _thread_calls = None  # type: ignore[assignment]

_monitoring: Any = getattr(sys, "monitoring", None)  # 3.12+


class CallsRecorder:
    """Enable/disable cProfile; segments accumulate in one profiler (like ``Profile.enable``).

    On 3.11 cProfile sees the thread that calls :meth:`start`; on 3.12+ it sees every thread
    (``sys.monitoring``), each with its own call stack (:class:`ThreadCalls`).
    """

    def __init__(self, hide_files: Collection[str] = ()) -> None:
        self.hide_files = frozenset(os.path.abspath(f) for f in hide_files)
        self.duration = 0.0
        self._profiler: cProfile.Profile | ThreadCalls = (
            cProfile.Profile() if _monitoring is None else ThreadCalls()
        )
        self._running = False
        self._started = 0.0

    def start(self, caller_frame: object = None, keep_caller: bool = False) -> None:
        if self._running:
            raise RuntimeError("this recorder is already running")
        self._running = True
        self._started = time.perf_counter()
        self._profiler.enable()

    def stop(self) -> None:
        self._profiler.disable()
        self.duration += time.perf_counter() - self._started
        self._running = False

    def stats(self) -> PstatsDict:
        """The pstats dict (what ``dump_stats`` writes), without the profiler's own entries."""
        if isinstance(self._profiler, ThreadCalls):
            raw: PstatsDict = self._profiler.stats()
        else:
            self._profiler.create_stats()
            raw = dict(self._profiler.stats)  # type: ignore[attr-defined,unused-ignore]
        return filter_stats(raw, self.hide_files)


# cProfile's sys.monitoring callbacks (Modules/_lsprof.c, 3.12 and 3.13): event -> method.
_CALLBACKS = (
    ("PY_START", "_pystart_callback"),
    ("PY_RESUME", "_pystart_callback"),
    ("PY_THROW", "_pystart_callback"),
    ("PY_RETURN", "_pyreturn_callback"),
    ("PY_YIELD", "_pyreturn_callback"),
    ("PY_UNWIND", "_pyreturn_callback"),
    ("CALL", "_ccall_callback"),
    ("C_RETURN", "_creturn_callback"),
    ("C_RAISE", "_creturn_callback"),
)

TOOL_NAME = "cProfile (vmtop, per thread)"

_BOOTSTRAP_CODES = frozenset(
    (threading.Thread._bootstrap.__code__, threading.Thread._bootstrap_inner.__code__)  # type: ignore[attr-defined]
)


def _current_thread_or_none(ident: int) -> threading.Thread | None:
    """The calling thread's ``Thread`` without making a dummy one for a foreign thread.

    A thread's first event comes from ``Thread._bootstrap``, before the thread is in
    ``threading._active``: then the ``Thread`` is that frame's ``self``.
    """
    thread: threading.Thread | None = threading._active.get(ident)  # type: ignore[attr-defined]
    if thread is not None:
        return thread
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code in _BOOTSTRAP_CODES:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, threading.Thread):
                return candidate
        frame = frame.f_back  # type: ignore[assignment]
    return None


class ThreadCalls:
    """cProfile on Python 3.12+ with one call stack per thread.

    From 3.12 cProfile runs on ``sys.monitoring``, which reports the calls of every thread,
    and one ``cProfile.Profile`` keeps one stack of open calls for all of them: the calls of
    two threads are interleaved on it, so a function is recorded as called by whatever the
    other thread had open, and a return in one thread can end a call of another. Here the
    ``sys.monitoring`` profiler slot holds a dispatcher instead (C: ``_thread_calls.c``) that
    passes each event to a ``cProfile.Profile`` of the thread it happened on; each thread's
    profile is exact, as with ``enable()`` on that thread on 3.11, and :meth:`stats` adds them
    up. ``include(thread)`` (the ``threading.Thread``, or None for a thread that the threading
    module does not know) picks the threads to profile; the others cost one C call per event.

    Calls still open at :meth:`disable` are not counted (``cProfile.disable`` would count them
    as if they had ended there). Without the C helper the dispatcher is a Python function,
    several times slower per event.
    """

    def __init__(self, include: Callable[[threading.Thread | None], bool] | None = None) -> None:
        if _monitoring is None:
            raise RuntimeError("ThreadCalls needs sys.monitoring (Python 3.12+)")
        self._include = include
        self._profiles: list[tuple[str, int, cProfile.Profile]] = []
        self._table: dict[int, Any] = {}
        self._dispatchers: list[Any] = []
        self._enabled = False
        self.threads_left_out = 0
        self.errors: list[str] = []  # what ``include`` raised (its thread was left out)

    def _new_profiler(self) -> cProfile.Profile | None:
        """A new thread's first event (runs on that thread, inside a monitoring callback)."""
        ident = threading.get_ident()
        thread = _current_thread_or_none(ident)
        if self._include is not None:
            try:
                included = self._include(thread)
            except Exception as exc:  # never into the program's code: leave the thread out
                self.errors.append(f"{type(exc).__name__}: {exc}")
                included = False
            if not included:
                self.threads_left_out += 1
                return None
        name = thread.name if thread is not None else f"thread {ident}"
        profiler = cProfile.Profile()
        self._profiles.append((name, ident, profiler))
        return profiler

    def _dispatcher(self, method: str) -> Any:
        if _thread_calls is not None:
            return _thread_calls.Dispatch(method, self._table, self._new_profiler)
        table, new_profiler, get_ident = self._table, self._new_profiler, threading.get_ident

        def dispatch(*args: Any) -> Any:  # thread ids can be reused here; not in C
            key = get_ident()
            profiler = table.get(key, table)
            if profiler is table:
                profiler = table[key] = new_profiler()
            return None if profiler is None else getattr(profiler, method)(*args)

        return dispatch

    def enable(self) -> None:
        """Take the ``sys.monitoring`` profiler slot (ValueError when a profiler has it)."""
        monitoring = _monitoring
        tool = monitoring.PROFILER_ID
        monitoring.use_tool_id(tool, TOOL_NAME)
        try:
            by_method: dict[str, Any] = {}
            events = 0
            for event_name, method in _CALLBACKS:
                event = getattr(monitoring.events, event_name)
                if method not in by_method:
                    by_method[method] = self._dispatcher(method)
                monitoring.register_callback(tool, event, by_method[method])
                events |= event
            self._dispatchers = list(by_method.values())
            monitoring.set_events(tool, events)
        except BaseException:
            self._release()
            raise
        self._enabled = True

    def disable(self) -> None:
        if self._enabled:
            self._enabled = False
            self._release()

    def _release(self) -> None:
        monitoring = _monitoring
        tool = monitoring.PROFILER_ID
        monitoring.set_events(tool, 0)
        for event_name, _method in _CALLBACKS:
            monitoring.register_callback(tool, getattr(monitoring.events, event_name), None)
        monitoring.free_tool_id(tool)
        for dispatcher in self._dispatchers:
            forget = getattr(dispatcher, "forget", None)
            if forget is not None:
                forget()

    def thread_names(self) -> list[str]:
        """The threads profiled (in the order of their first call in the window)."""
        return [name for name, _ident, _p in self._profiles]

    def stats(self, thread: str | None = None) -> PstatsDict:
        """The pstats dict of every profiled thread added up (or of the threads named
        ``thread``): the sum of what each thread's own cProfile recorded."""
        total: dict[Any, Any] = {}
        for name, _ident, profiler in list(self._profiles):
            if thread is not None and name != thread:
                continue
            profiler.create_stats()
            for func, stat in profiler.stats.items():
                if func in total:
                    total[func] = pstats.add_func_stats(total[func], stat)  # type: ignore[attr-defined,unused-ignore]
                else:
                    cc, nc, tt, ct, callers = stat
                    total[func] = (cc, nc, tt, ct, dict(callers))
        return total

    def counts(self) -> tuple[int, int]:
        """Events passed to a thread's profiler and events of left-out threads (C only)."""
        passed = skipped = 0
        for dispatcher in self._dispatchers:
            c = getattr(dispatcher, "counts", (0, 0))
            passed += c[0]
            skipped += c[1]
        return passed, skipped
