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

Both count into a registry (:mod:`vmtop.agent.registry`, or its C twin): a task has an
entry only while pending and is folded into its coroutine's group when it finishes, so no
finished task is kept alive. Each loop also gets a task factory while a client is attached:
it stamps each task's creation time (group lifetimes, tasks created per second) and counts an
eager first step (3.12+). uvloop runs callbacks in its own Cython Handle, which no hook can
reach: there the factory wraps each new coroutine in a counting proxy (C hooks only), so
tasks created after the attach are counted exactly; older ones say why they are not.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import collections.abc
import contextlib
import os
import sys
import threading
from asyncio import format_helpers
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any, Protocol

from vmtop.agent.registry import PyRegistry, py_task_factory

_TASK_TYPES: tuple[type, ...] = tuple(
    {t for t in (asyncio.Task, getattr(asyncio.tasks, "_PyTask", None)) if isinstance(t, type)}
)

HOOK_ENV = "VMTOP_HOOKS"  # "python" forces the Python hooks (step and dequeue)
Sink = dict[Any, list[float]]  # TaskStat -> [steps, seconds] since a session's last snapshot


class Hook(Protocol):
    """What StepCounter needs of a hook: ``run`` goes in place of ``Handle._run``."""

    run: Any


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


class PyStepHook:
    """The hook in Python: wraps the original ``Handle._run`` and counts into ``registry``."""

    def __init__(self, original: Callable[[Any], None], registry: Any) -> None:
        task_types = _TASK_TYPES
        step, other = registry.step, registry.other

        def _run(self: Any, _orig: Any = original, _pc: Any = perf_counter) -> None:
            owner = getattr(self._callback, "__self__", None)
            t0 = _pc()
            try:
                _orig(self)
            finally:
                end = _pc()
                try:
                    if isinstance(owner, task_types):
                        step(owner, end - t0, end)
                    else:
                        other(end - t0)
                except Exception:
                    pass  # bookkeeping never reaches the program

        _run.__wrapped__ = original  # type: ignore[attr-defined]
        _run.__qualname__ = "Handle._run"
        self.run = _run


class _CStepHook:
    """The C hook behind the same interface (``run`` is the C object itself)."""

    def __init__(self, original: Callable[[Any], None], registry: Any) -> None:
        from vmtop.agent._hooks import StepHook

        self.run = StepHook(
            asyncio.events.Handle, original, _TASK_TYPES, report_callback_error, registry
        )


def use_c_hooks(kind: str | None = None) -> bool:
    """Whether the C hooks are built and wanted (``kind`` or ``VMTOP_HOOKS`` is not "python")."""
    return (kind or os.environ.get(HOOK_ENV, "c")) != "python" and c_hook_available()


def c_hook_available() -> bool:
    try:
        import vmtop.agent._hooks  # noqa: F401
    except ImportError:
        return False
    return True


def make_registry(kind: str | None = None) -> Any:
    """A registry for the hooks of ``kind``: the C one with the C hooks, else Python's."""
    if use_c_hooks(kind):
        from vmtop.agent._hooks import Registry

        return Registry(asyncio.CancelledError, asyncio.Task)
    return PyRegistry(asyncio.CancelledError)


def make_hook(original: Callable[[Any], None], registry: Any) -> Hook:
    """The C hook for a C registry, else the Python one."""
    if not isinstance(registry, PyRegistry):
        try:
            return _CStepHook(original, registry)
        except TypeError:  # Handle's slots are not what the C hook reads: keep Python's
            pass
    return PyStepHook(original, registry)


def make_factory(registry: Any, original: Any, wrap: bool) -> Any:
    """A task factory that registers every task (and, ``wrap``, counts its steps itself)."""
    if isinstance(registry, PyRegistry):
        return py_task_factory(registry, original, asyncio.Task)
    from vmtop.agent._hooks import CountingCoro, TaskFactory

    collections.abc.Coroutine.register(CountingCoro)  # asyncio.Task accepts it (idempotent)
    return TaskFactory(registry, original, asyncio.Task, wrap)


def merge(sink: Sink, taken: Iterable[tuple[Any, int, float]]) -> None:
    for stat, steps, secs in taken:
        c = sink.get(stat)
        if c is None:
            sink[stat] = [steps, secs]
        else:
            c[0] += steps
            c[1] += secs


class StepCounter:
    """The step hook, the per-loop task factories and the registry they count into.

    ``sinks`` hold each client session's counts since its last snapshot (``TaskStat`` ->
    ``[steps, seconds]``); stats of finished tasks leave them at every drain, so a session
    that stops asking holds at most one entry per live task. ``other`` counts non-task
    callbacks (I/O callbacks, call_later timers) drained so far: ``[count, seconds]``.
    """

    def __init__(self, hook_kind: str | None = None) -> None:
        self.other: list[float] = [0, 0.0]
        self.sinks: list[Sink] = []
        self.hook_kind = hook_kind  # None: C when built, unless VMTOP_HOOKS=python
        self.registry: Any = None
        self._hook: Hook | None = None
        self._original: Callable[[Any], None] | None = None
        self._factories: dict[Any, Any] = {}  # loop -> the factory we installed
        self._lock = threading.Lock()

    @property
    def implementation(self) -> str:
        """ "c" or "python": which hook is (or would be) installed."""
        return "c" if use_c_hooks(self.hook_kind) else "python"

    def install(self) -> None:
        with self._lock:
            if self._original is not None:
                return
            original = asyncio.events.Handle._run
            registry = make_registry(self.hook_kind)
            hook = make_hook(original, registry)
            asyncio.events.Handle._run = hook.run  # type: ignore[method-assign]
            self.registry = registry
            self._original = original
            self._hook = hook

    def uninstall(self) -> None:
        with self._lock:
            if self._original is None:
                return
            if self._hook is not None and asyncio.events.Handle._run is self._hook.run:
                asyncio.events.Handle._run = self._original  # type: ignore[method-assign,assignment]
            self._original = None
            self._hook = None
            for loop, ours in list(self._factories.items()):
                with contextlib.suppress(Exception):
                    if loop.get_task_factory() is ours:
                        loop.set_task_factory(ours._vmtop_original)
            self._factories.clear()
            if self.registry is not None:
                self.registry.clear()  # entries hold pending tasks: let them go
            self.registry = None
            self.other[:] = [0, 0.0]
            self.sinks.clear()

    def install_factory(self, loop: Any, wrap: bool) -> bool:
        """Put our task factory on ``loop`` (call on the loop's thread); ``wrap`` makes it
        count steps itself (loops whose Handle the hook cannot see). True when it is there
        and counts what it should. Scheduled at attach, it may run after a detach (the loop
        was blocked): then it does nothing, so no factory outlives the clients."""
        with self._lock:
            if self._original is None or self.registry is None:
                return False
            if wrap and isinstance(self.registry, PyRegistry):
                return False  # the counting coroutine exists only in C
            current = loop.get_task_factory()
            if loop in self._factories and current is self._factories[loop]:
                return True
            factory = make_factory(self.registry, current, wrap)
            loop.set_task_factory(factory)
            self._factories[loop] = factory
            return True

    def counts_loop(self, loop: Any, uvloop: bool) -> bool:
        """Whether steps of ``loop``'s new tasks are counted now."""
        if not uvloop:
            return self._original is not None
        ours = self._factories.get(loop)
        return ours is not None and bool(getattr(ours, "wraps", 0))

    # -- reading (on a loop thread, or the agent's) -----------------------------------------
    def drain(self) -> list[tuple[Any, int, float]]:
        """Move what stepped since the last drain into every session's sink; drop finished
        tasks' stats from the sinks (their counts live on in their group)."""
        registry = self.registry
        if registry is None:
            return []
        taken, other = registry.take()
        self.other[0] += other[0]
        self.other[1] += other[1]
        for sink in list(self.sinks):
            merge(sink, taken)
            for stat in [s for s in sink if s.finished]:
                del sink[stat]
        return taken

    def stat(self, task: Any) -> Any:
        return None if self.registry is None else self.registry.stat(task)

    def get(self, task: Any) -> tuple[int, float]:
        """Steps and seconds of a pending ``task`` since the attach ((0, 0.0) when none)."""
        s = self.stat(task)
        return (0, 0.0) if s is None else (int(s.steps), float(s.secs))

    def groups(self) -> list[Any]:
        return [] if self.registry is None else self.registry.group_list()
