"""Count task steps (reductions) and wall time inside them, while a client is attached.

Every callback of the stdlib event loop runs through ``asyncio.events.Handle._run`` (pure
Python on 3.11-3.13); for a task step or wake-up, ``handle._callback.__self__`` is the Task.
We wrap that method while at least one client is attached and restore the original when the
last one leaves, so an unwatched program pays nothing.

The hook writes into a per-thread "recent" dict (a loop's tasks always step on the loop's
thread). A snapshot drains that dict on the same thread — so no step is ever lost to a race —
merges it into the totals and hands it to every client session: a refresh then costs
O(tasks that ran since the last refresh), not O(tasks that ever ran).

Holes, reported rather than guessed: uvloop has its own Cython Handle (no counts: the row
says so), and a 3.12+ eager task runs its first step inside ``create_task``; a task-factory
proxy times that step and counts it, for loops whose factory we could wrap.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import threading
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any

_TASK_TYPES: tuple[type, ...] = tuple(
    {t for t in (asyncio.Task, getattr(asyncio.tasks, "_PyTask", None)) if isinstance(t, type)}
)

Counts = dict[Any, list[float]]  # task -> [steps, seconds]


class _Recent(threading.local):
    def __init__(self) -> None:
        self.counts: Counts = {}
        self.other: list[float] = [0, 0.0]


def merge(into: Counts, counts: Counts) -> None:
    for task, c in counts.items():
        t = into.get(task)
        if t is None:
            into[task] = [c[0], c[1]]
        else:
            t[0] += c[0]
            t[1] += c[1]


class StepCounter:
    """Per-task ``[steps, seconds]`` counters, fed by the wrapped ``Handle._run``.

    ``totals`` holds what was drained so far (cumulative since attach); the hook's per-thread
    ``recent`` dicts hold what happened since. ``other`` counts non-task callbacks (I/O
    callbacks, call_later timers) drained so far: ``[count, seconds]``.
    """

    def __init__(self) -> None:
        self.totals: Counts = {}
        self.other: list[float] = [0, 0.0]
        self.finished: list[float] = [0, 0.0]  # totals of pruned (finished) tasks
        self.sinks: list[Counts] = []  # each client session's counts since its last snapshot
        self._recent = _Recent()
        self._original: Callable[[Any], None] | None = None
        self._wrapped: Callable[[Any], None] | None = None
        self._factories: dict[Any, Any] = {}  # loop -> factory we replaced
        self._lock = threading.Lock()
        self._prunes = 0

    @property
    def installed(self) -> bool:
        return self._original is not None

    def install(self) -> None:
        with self._lock:
            if self._original is not None:
                return
            original = asyncio.events.Handle._run
            recent = self._recent
            task_types = _TASK_TYPES

            def _run(self: Any, _orig: Any = original, _pc: Any = perf_counter) -> None:
                owner = getattr(self._callback, "__self__", None)
                t0 = _pc()
                try:
                    _orig(self)
                finally:
                    dt = _pc() - t0
                    if isinstance(owner, task_types):
                        counts = recent.counts
                        c = counts.get(owner)
                        if c is None:
                            counts[owner] = [1, dt]
                        else:
                            c[0] += 1
                            c[1] += dt
                    else:
                        other = recent.other
                        other[0] += 1
                        other[1] += dt

            _run.__wrapped__ = original  # type: ignore[attr-defined]
            _run.__qualname__ = "Handle._run"
            asyncio.events.Handle._run = _run  # type: ignore[method-assign]
            self._original = original
            self._wrapped = _run

    def uninstall(self) -> None:
        with self._lock:
            if self._original is None:
                return
            if asyncio.events.Handle._run is self._wrapped:
                asyncio.events.Handle._run = self._original  # type: ignore[method-assign,assignment]
            self._original = None
            self._wrapped = None
            for loop, factory in list(self._factories.items()):
                if getattr(loop.get_task_factory(), "_vmtop_original", object()) is factory:
                    loop.set_task_factory(factory)
            self._factories.clear()
            self.totals.clear()
            self.other[:] = [0, 0.0]
            self.finished[:] = [0, 0.0]
            self.sinks.clear()
            self._recent = _Recent()  # per-thread leftovers are dropped with the old object

    def wrap_eager_factory(self, loop: Any) -> bool:
        """Count the eager first step of tasks made by ``loop``'s task factory (3.12+).

        Returns True when the loop's factory is now counted. Call on the loop's thread.
        Scheduled at attach, it may run after a detach (the loop was blocked): then it does
        nothing, so no counting factory outlives the clients.
        """
        with self._lock:
            if self._original is None:
                return False
            return self._wrap_eager_factory(loop)

    def _wrap_eager_factory(self, loop: Any) -> bool:
        factory = loop.get_task_factory()
        if factory is None or hasattr(factory, "_vmtop_original") or loop in self._factories:
            return factory is None or hasattr(factory, "_vmtop_original")
        recent = self._recent

        def counting_factory(loop_: Any, coro: Any, **kwargs: Any) -> Any:
            t0 = perf_counter()
            task = factory(loop_, coro, **kwargs)
            dt = perf_counter() - t0
            started = getattr(coro, "cr_suspended", False) or getattr(coro, "cr_frame", 0) is None
            if task.done() or started:
                # The factory ran the first step eagerly (asyncio.eager_task_factory).
                counts = recent.counts
                c = counts.get(task)
                if c is None:
                    counts[task] = [1, dt]
                else:
                    c[0] += 1
                    c[1] += dt
            return task

        counting_factory._vmtop_original = factory  # type: ignore[attr-defined]
        loop.set_task_factory(counting_factory)
        self._factories[loop] = factory
        return True

    # -- on a loop thread -------------------------------------------------------------------
    def drain(self) -> Counts:
        """Move this thread's recent counts into the totals and every session's sink."""
        recent = self._recent
        counts, other = recent.counts, recent.other
        recent.counts, recent.other = {}, [0, 0.0]
        self.other[0] += other[0]
        self.other[1] += other[1]
        if counts:
            merge(self.totals, counts)
            for sink in list(self.sinks):
                merge(sink, counts)
        return counts

    def prune(self, every: int = 10) -> None:
        """Drop totals of finished tasks (keeps their sum in ``finished``).

        Runs on every ``every``-th call: finished tasks are skipped by readers anyway."""
        self._prunes += 1
        if self._prunes % every:
            return
        for task in [t for t in list(self.totals) if t.done()]:
            c = self.totals.pop(task, None)
            if c is not None:
                self.finished[0] += c[0]
                self.finished[1] += c[1]

    def get(self, task: Any) -> tuple[int, float]:
        """Totals drained so far for ``task`` (call :meth:`drain` first on its thread)."""
        c = self.totals.get(task)
        if c is None:
            return 0, 0.0
        return int(c[0]), c[1]

    def tasks(self) -> Iterable[Any]:
        return list(self.totals)
