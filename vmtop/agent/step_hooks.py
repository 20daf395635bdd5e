"""Count task steps (reductions) and wall time inside them, while a client is attached.

Every callback of the stdlib event loop runs through ``asyncio.events.Handle._run`` (pure
Python on 3.11-3.13); for a task step or wake-up, ``handle._callback.__self__`` is the Task.
While at least one client is attached we replace that method with a hook that times the
callback and counts it for its task, and put the original back when the last one leaves, so
an unwatched program pays nothing.

Two hooks do the same thing:

* ``vmtop.agent._hooks.StepHook`` (C, built at install when a compiler is there): runs
  the handle's callback itself, as ``Handle._run`` does, and costs less per step than the
  Python ``Handle._run`` it replaces (docs/benchmarks.md). An exception from the callback
  goes to :func:`report_callback_error`, the stdlib's except branch.
* :class:`PyStepHook`, the fallback (or ``VMTOP_HOOKS=python``): a Python wrapper
  around the original; about 3,400 instructions more per step in the worst case.

Both count into ``counts[task] = [steps, seconds]`` and hand them over with ``take()``; a
snapshot takes them on the loop's thread, merges them into the totals and hands them to every
client session: a refresh then costs O(tasks that ran since the last refresh), not O(tasks
that ever ran).

Holes, reported rather than guessed: uvloop has its own Cython Handle (no counts: the row
says so), and a 3.12+ eager task runs its first step inside ``create_task``; a task-factory
proxy times that step and counts it, for loops whose factory we could wrap.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import os
import sys
import threading
from asyncio import format_helpers
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any, Protocol

_TASK_TYPES: tuple[type, ...] = tuple(
    {t for t in (asyncio.Task, getattr(asyncio.tasks, "_PyTask", None)) if isinstance(t, type)}
)

Counts = dict[Any, list[float]]  # task -> [steps, seconds]
HOOK_ENV = "VMTOP_HOOKS"  # "python" forces the Python hooks (step and dequeue)


class Hook(Protocol):
    """What StepCounter needs of a hook: ``run`` goes in place of ``Handle._run``."""

    run: Any

    def take(self) -> tuple[Counts, list[float]]: ...

    def add(self, task: Any, steps: int, seconds: float) -> None: ...


def report_callback_error(handle: Any, exc: BaseException) -> None:
    """``Handle._run``'s except branch (3.11-3.13), for the C hook that runs callbacks."""
    if sys.version_info >= (3, 13):
        cb = format_helpers._format_callback_source(
            handle._callback, handle._args, debug=handle._loop.get_debug()
        )
    else:
        cb = format_helpers._format_callback_source(handle._callback, handle._args)
    context: dict[str, Any] = {
        "message": f"Exception in callback {cb}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


class _Recent(threading.local):
    def __init__(self) -> None:
        self.counts: Counts = {}
        self.other: list[float] = [0, 0.0]


def _add(counts: Counts, task: Any, steps: int, seconds: float) -> None:
    c = counts.get(task)
    if c is None:
        counts[task] = [steps, seconds]
    else:
        c[0] += steps
        c[1] += seconds


class PyStepHook:
    """The hook in Python: wraps the original ``Handle._run``.

    Counts go to a per-thread dict (a loop's tasks always step on the loop's thread), so
    ``take()`` must run on the loop's thread: Python code can switch threads between reading
    the dict and writing to it, and a step counted into a dict already taken would be lost.
    """

    def __init__(self, original: Callable[[Any], None]) -> None:
        self._recent = recent = _Recent()
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
        self.run = _run

    def take(self) -> tuple[Counts, list[float]]:
        recent = self._recent
        counts, other = recent.counts, recent.other
        recent.counts, recent.other = {}, [0, 0.0]
        return counts, other

    def add(self, task: Any, steps: int, seconds: float) -> None:
        _add(self._recent.counts, task, steps, seconds)


class _CStepHook:
    """The C hook behind the same interface (``run`` is the C object itself)."""

    def __init__(self, original: Callable[[Any], None]) -> None:
        from vmtop.agent._hooks import StepHook

        self.run = StepHook(asyncio.events.Handle, original, _TASK_TYPES, report_callback_error)
        self.take = self.run.take
        self.add = self.run.add


def use_c_hooks(kind: str | None = None) -> bool:
    """Whether the C hooks are built and wanted (``kind`` or ``VMTOP_HOOKS`` is not "python")."""
    return (kind or os.environ.get(HOOK_ENV, "c")) != "python" and c_hook_available()


def c_hook_available() -> bool:
    try:
        import vmtop.agent._hooks  # noqa: F401
    except ImportError:
        return False
    return True


def sampled_call(
    original: Callable[..., Any], every: int, sample: Callable[[Any], object]
) -> Callable[..., Any]:
    """A stand-in for the method ``original`` that also calls ``sample(self)`` after every
    ``every``-th call (a power of two); in C when built, else in Python."""
    if use_c_hooks():
        from vmtop.agent._hooks import SampledCall

        return SampledCall(original, every, sample)
    tick = [0]
    mask = every - 1

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        tick[0] += 1
        if not tick[0] & mask:
            try:
                sample(self)
            except Exception:
                pass
        return result

    call.__wrapped__ = original  # type: ignore[attr-defined]
    return call


def make_hook(original: Callable[[Any], None], kind: str | None = None) -> Hook:
    """The C hook when built (and not turned off by ``VMTOP_HOOKS=python``), else Python."""
    if use_c_hooks(kind):
        try:
            return _CStepHook(original)
        except TypeError:  # Handle's slots are not what the C hook reads: keep Python's
            pass
    return PyStepHook(original)


def merge(into: Counts, counts: Counts) -> None:
    for task, c in counts.items():
        t = into.get(task)
        if t is None:
            into[task] = [c[0], c[1]]
        else:
            t[0] += c[0]
            t[1] += c[1]


class StepCounter:
    """Per-task ``[steps, seconds]`` counters, fed by the hook in ``Handle._run``.

    ``totals`` holds what was drained so far (cumulative since attach); the hook holds what
    happened since. ``other`` counts non-task callbacks (I/O callbacks, call_later timers)
    drained so far: ``[count, seconds]``.
    """

    def __init__(self, hook_kind: str | None = None) -> None:
        self.totals: Counts = {}
        self.other: list[float] = [0, 0.0]
        self.finished: list[float] = [0, 0.0]  # totals of pruned (finished) tasks
        self.sinks: list[Counts] = []  # each client session's counts since its last snapshot
        self.hook_kind = hook_kind  # None: C when built, unless VMTOP_STEP_HOOK=python
        self._hook: Hook | None = None
        self._original: Callable[[Any], None] | None = None
        self._factories: dict[Any, Any] = {}  # loop -> factory we replaced
        self._lock = threading.Lock()
        self._prunes = 0

    @property
    def installed(self) -> bool:
        return self._original is not None

    @property
    def implementation(self) -> str:
        """ "c" or "python": which hook is (or would be) installed."""
        hook = self._hook or make_hook(asyncio.events.Handle._run, self.hook_kind)
        return "python" if isinstance(hook, PyStepHook) else "c"

    def install(self) -> None:
        with self._lock:
            if self._original is not None:
                return
            original = asyncio.events.Handle._run
            hook = make_hook(original, self.hook_kind)
            asyncio.events.Handle._run = hook.run  # type: ignore[method-assign]
            self._original = original
            self._hook = hook

    def uninstall(self) -> None:
        with self._lock:
            if self._original is None:
                return
            if self._hook is not None and asyncio.events.Handle._run is self._hook.run:
                asyncio.events.Handle._run = self._original  # type: ignore[method-assign,assignment]
            self._original = None
            self._hook = None  # leftovers not yet taken are dropped with it
            for loop, factory in list(self._factories.items()):
                if getattr(loop.get_task_factory(), "_vmtop_original", object()) is factory:
                    loop.set_task_factory(factory)
            self._factories.clear()
            self.totals.clear()
            self.other[:] = [0, 0.0]
            self.finished[:] = [0, 0.0]
            self.sinks.clear()

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
        hook = self._hook
        if hook is None:
            return False

        def counting_factory(loop_: Any, coro: Any, **kwargs: Any) -> Any:
            t0 = perf_counter()
            task = factory(loop_, coro, **kwargs)
            dt = perf_counter() - t0
            started = getattr(coro, "cr_suspended", False) or getattr(coro, "cr_frame", 0) is None
            if task.done() or started:
                # The factory ran the first step eagerly (asyncio.eager_task_factory).
                hook.add(task, 1, dt)
            return task

        counting_factory._vmtop_original = factory  # type: ignore[attr-defined]
        loop.set_task_factory(counting_factory)
        self._factories[loop] = factory
        return True

    # -- on a loop thread -------------------------------------------------------------------
    def drain(self) -> Counts:
        """Move the hook's counts into the totals and every session's sink.

        The C hook hands over every thread's counts; the Python one this thread's."""
        hook = self._hook
        if hook is None:
            return {}
        counts, other = hook.take()
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
