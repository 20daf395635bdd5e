"""Find every running event loop in the process and run code on a loop's own thread."""

from __future__ import annotations

import asyncio
import asyncio.tasks
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

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


def all_tasks_anywhere() -> list[Any]:
    """Every live task of every loop (safe from any thread: retries if a set changes size)."""
    out: list[Any] = []
    for reg in _task_registries():
        for _ in range(100):
            try:
                out.extend(list(reg))
                break
            except RuntimeError:  # set changed size during iteration
                continue
    return out


def running_loops() -> list[asyncio.AbstractEventLoop]:
    """Running loops that own at least one task (``asyncio.run`` always has its main task)."""
    seen: dict[int, asyncio.AbstractEventLoop] = {}
    for task in all_tasks_anywhere():
        try:
            loop = task.get_loop()
        except Exception:
            continue
        if id(loop) not in seen and loop.is_running() and not loop.is_closed():
            seen[id(loop)] = loop
    return list(seen.values())


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

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:  # reported to the caller, never raised into the loop
            future.set_exception(exc)

    handle = loop.call_soon_threadsafe(run)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        if future.cancel():
            handle.cancel()
        raise LoopTimeout(f"loop did not answer within {timeout:.1f} s") from None
