"""Count task steps (reductions) and wall time inside them, while a client is attached.

Every callback of the stdlib event loop runs through ``asyncio.events.Handle._run`` (pure
Python on 3.11-3.13); for a task step or wake-up, ``handle._callback.__self__`` is the Task.
We wrap that method while at least one client is attached and restore the original when the
last one leaves, so an unwatched program pays nothing.

Holes, reported rather than guessed: uvloop has its own Cython Handle (no counts: the row
says so), and a 3.12+ eager task runs its first step inside ``create_task``; a task-factory
proxy times that step and counts it, for loops whose factory we could wrap.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import threading
from collections.abc import Callable
from time import perf_counter
from typing import Any

_TASK_TYPES: tuple[type, ...] = tuple(
    {t for t in (asyncio.Task, getattr(asyncio.tasks, "_PyTask", None)) if isinstance(t, type)}
)


class StepCounter:
    """Per-task ``[steps, seconds]`` counters, fed by the wrapped ``Handle._run``.

    ``counters`` maps a Task to a two-item list; entries of finished tasks are pruned by
    :meth:`prune`, which the snapshot calls on the loop thread. ``other`` counts non-task
    callbacks (I/O callbacks, call_later timers): ``[count, seconds]``.
    """

    def __init__(self) -> None:
        self.counters: dict[Any, list[float]] = {}
        self.other: list[float] = [0, 0.0]
        self.finished: list[float] = [0, 0.0]  # counters of pruned (finished) tasks
        self._original: Callable[[Any], None] | None = None
        self._wrapped: Callable[[Any], None] | None = None
        self._factories: dict[Any, Any] = {}  # loop -> factory we replaced
        self._lock = threading.Lock()

    @property
    def installed(self) -> bool:
        return self._original is not None

    def install(self) -> None:
        with self._lock:
            if self._original is not None:
                return
            original = asyncio.events.Handle._run
            counters = self.counters
            other = self.other
            task_types = _TASK_TYPES

            def _run(self: Any, _orig: Any = original, _pc: Any = perf_counter) -> None:
                owner = getattr(self._callback, "__self__", None)
                t0 = _pc()
                try:
                    _orig(self)
                finally:
                    dt = _pc() - t0
                    if isinstance(owner, task_types):
                        c = counters.get(owner)
                        if c is None:
                            counters[owner] = [1, dt]
                        else:
                            c[0] += 1
                            c[1] += dt
                    else:
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
            self.counters.clear()
            self.other[:] = [0, 0.0]
            self.finished[:] = [0, 0.0]

    def wrap_eager_factory(self, loop: Any) -> bool:
        """Count the eager first step of tasks made by ``loop``'s task factory (3.12+).

        Returns True when the loop's factory is now counted. Call on the loop's thread.
        """
        factory = loop.get_task_factory()
        if factory is None or hasattr(factory, "_vmtop_original") or loop in self._factories:
            return factory is None or hasattr(factory, "_vmtop_original")
        counters = self.counters

        def counting_factory(loop_: Any, coro: Any, **kwargs: Any) -> Any:
            t0 = perf_counter()
            task = factory(loop_, coro, **kwargs)
            dt = perf_counter() - t0
            started = getattr(coro, "cr_suspended", False) or getattr(coro, "cr_frame", 0) is None
            if task.done() or started:
                # The factory ran the first step eagerly (asyncio.eager_task_factory).
                c = counters.get(task)
                if c is None:
                    counters[task] = [1, dt]
                else:
                    c[0] += 1
                    c[1] += dt
            return task

        counting_factory._vmtop_original = factory  # type: ignore[attr-defined]
        loop.set_task_factory(counting_factory)
        self._factories[loop] = factory
        return True

    def prune(self) -> None:
        """Drop counters of finished tasks (keeps their sum in ``finished``). Loop thread."""
        done = [t for t in list(self.counters) if t.done()]
        for task in done:
            c = self.counters.pop(task, None)
            if c is not None:
                self.finished[0] += c[0]
                self.finished[1] += c[1]

    def get(self, task: Any) -> tuple[int, float]:
        c = self.counters.get(task)
        if c is None:
            return 0, 0.0
        return int(c[0]), c[1]
