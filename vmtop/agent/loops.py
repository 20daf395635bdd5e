"""Find every running event loop in the process and run code on a loop's own thread."""

from __future__ import annotations

import asyncio
import asyncio.tasks
import concurrent.futures
import operator
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from profilers import priority

T = TypeVar("T")


def _task_registries() -> list[Any]:
    # 3.11: one WeakSet ``_all_tasks``; 3.12/3.13: ``_scheduled_tasks`` (WeakSet) plus
    # ``_eager_tasks`` (a set of tasks that are still in their eager first step).
    regs = []
    for name in ("_all_tasks", "_scheduled_tasks", "_eager_tasks"):
        reg = getattr(asyncio.tasks, name, None)
        if reg is not None:
            regs.append(reg)
    return regs


def task_refs() -> list[Any]:
    """Weak references to every live task of every loop (safe from any thread, cheap).

    Copies the WeakSets' underlying sets of weak references (a C-speed copy that a
    concurrent add cannot break); callers dereference only the slice they need.
    """
    out: list[Any] = []
    for reg in _task_registries():
        data = getattr(reg, "data", None)
        for _ in range(100):
            try:
                if data is None:  # a plain set of tasks (3.12+ _eager_tasks)
                    out.extend(weakref.ref(t) for t in list(reg))
                else:
                    out.extend(list(data))
                break
            except RuntimeError:  # set changed size during iteration
                continue
    return out


def deref(refs: Iterable[Any]) -> list[Any]:
    """The live tasks behind ``refs``."""
    return [t for t in map(operator.call, refs) if t is not None]


def all_tasks_anywhere() -> list[Any]:
    """Every live task of every loop (safe from any thread)."""
    return deref(task_refs())


def task_count() -> int:
    """Live tasks in all loops, O(1): the registries' sizes."""
    return sum(len(reg) for reg in _task_registries())


def running_loops(tasks: list[Any] | None = None) -> tuple[list[Any], dict[int, int]]:
    """Running loops that own at least one task, and the number of live tasks of each."""
    seen: dict[int, Any] = {}
    counts: dict[int, int] = {}
    for task in all_tasks_anywhere() if tasks is None else tasks:
        try:
            loop = task.get_loop()
        except Exception:
            continue
        key = id(loop)
        if key not in seen:
            if not loop.is_running() or loop.is_closed():
                continue
            seen[key] = loop
        if not task.done():
            counts[key] = counts.get(key, 0) + 1
    return list(seen.values()), counts


def loop_thread_id(loop: asyncio.AbstractEventLoop) -> int | None:
    """``threading.get_ident()`` of the thread running ``loop`` (stdlib loops record it)."""
    ident = getattr(loop, "_thread_id", None)
    return ident if isinstance(ident, int) else None


def loop_thread_name(loop: asyncio.AbstractEventLoop) -> str:
    ident = loop_thread_id(loop)
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return "?"


def is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.startswith("uvloop")


class LoopTimeout(Exception):
    """The loop did not run our callback in time: it is blocked (or very busy)."""


def call_in_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], T], timeout: float) -> T:
    """Run ``fn`` on ``loop``'s thread and return its result, or raise :class:`LoopTimeout`.

    On timeout the callback is withdrawn if it has not started, so a blocked loop does not
    pile up snapshot work to run when it wakes.
    """
    if loop_thread_id(loop) == threading.get_ident():
        return fn()
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    wake = priority.waker()  # held by run() until it has set it: never a closed descriptor

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:  # reported to the caller, never raised into the loop
            future.set_exception(exc)
        if wake is not None:
            wake.set()

    handle = loop.call_soon_threadsafe(run)
    try:
        # The loop's own work runs at full speed meanwhile; the answer is taken ahead of it.
        return priority.wait_future(future, wake, timeout)
    except concurrent.futures.TimeoutError:
        if future.cancel():
            handle.cancel()
        raise LoopTimeout(f"loop did not answer within {timeout:.1f} s") from None
