"""Run a user's function, sync or async, between a recorder's ``start()`` and ``stop()``."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import Any


def call_now(
    start: Callable[[], None],
    stop: Callable[[], None],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """``fn(*args, **kwargs)`` between ``start()`` and ``stop()``; coroutines run to the end."""
    if inspect.iscoroutinefunction(fn):
        return run_coroutine(start, stop, lambda: fn(*args, **kwargs))
    start()
    try:
        value = fn(*args, **kwargs)
    finally:
        stop()
    if inspect.iscoroutine(value):
        coroutine = value
        return run_coroutine(start, stop, lambda: coroutine)
    return value


def run_coroutine(
    start: Callable[[], None],
    stop: Callable[[], None],
    make: Callable[[], Coroutine[Any, Any, Any]],
) -> Any:
    """Run the coroutine ``make()`` returns, recorded, with ``asyncio.run``; when this thread
    already runs a loop (Jupyter), on a thread of its own."""

    async def main() -> Any:
        start()
        try:
            return await make()
        finally:
            stop()

    return run_to_end(main)


def run_to_end(
    main: Callable[[], Coroutine[Any, Any, Any]], name: str = "vmtop-run-coroutine"
) -> Any:
    """``asyncio.run(main())``; when this thread already runs a loop (Jupyter), on a thread of
    its own (``name``), its result or exception passed back here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(main())
        except BaseException as exc:  # re-raised on the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=name)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def function_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return str(name) if name else repr(fn)
