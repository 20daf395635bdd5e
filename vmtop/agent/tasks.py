"""What an asyncio task is doing: state, await chain, innermost frame, what it waits on.

These functions read task internals and run on the task's loop thread (the snapshot does
that), where the await chain cannot change under us.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from types import FrameType
from typing import Any

from vmtop.records import Location

MAX_CHAIN = 64  # await chains deeper than this are cut (and say so)


def coro_chain(coro: Any) -> Iterator[Any]:
    """The coroutine/generator objects of the await chain, outermost first."""
    depth = 0
    while coro is not None and depth < MAX_CHAIN:
        yield coro
        depth += 1
        nxt = getattr(coro, "cr_await", None)
        if nxt is None:
            nxt = getattr(coro, "gi_yieldfrom", None)
        if nxt is None:
            nxt = getattr(coro, "ag_await", None)
        coro = nxt


def chain_frames(task: Any) -> list[FrameType]:
    """Frames of the task's await chain, outermost first (suspended frames only)."""
    frames = []
    for obj in coro_chain(task.get_coro()):
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
        if frame is None:
            frame = getattr(obj, "ag_frame", None)
        if frame is not None:
            frames.append(frame)
    return frames


def frame_location(frame: FrameType) -> Location:
    code = frame.f_code
    name = getattr(code, "co_qualname", code.co_name)
    return Location(name, code.co_filename, frame.f_lineno or code.co_firstlineno)


_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep


def is_asyncio_frame(frame: FrameType) -> bool:
    return frame.f_code.co_filename.startswith(_ASYNCIO_DIR)


def current_location(task: Any, frames: list[FrameType] | None = None) -> Location | None:
    """Innermost frame of the await chain that is not asyncio's own code."""
    if frames is None:
        frames = chain_frames(task)
    for frame in reversed(frames):
        if not is_asyncio_frame(frame):
            return frame_location(frame)
    if frames:
        return frame_location(frames[-1])
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    if code is not None:
        return Location(
            getattr(code, "co_qualname", code.co_name), code.co_filename, code.co_firstlineno
        )
    return None


def coro_name(task: Any) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", None) or type(coro).__name__


def describe_waiter(task: Any, frames: list[FrameType] | None = None) -> str:
    """A short phrase for what the task waits on (``Queue.get``, ``sleep 2.0s``, a future)."""
    if frames is None:
        frames = chain_frames(task)
    lib = [f for f in frames if is_asyncio_frame(f)]
    if lib:
        first = lib[0]
        name = getattr(first.f_code, "co_qualname", first.f_code.co_name)
        if name == "sleep":
            delay = first.f_locals.get("delay")
            if isinstance(delay, int | float):
                return f"sleep {delay:.3g}s"
            return "sleep"
        if name == "__sleep0":
            return "sleep 0"
        return name
    waiter = getattr(task, "_fut_waiter", None)
    if waiter is not None:
        return _short_future(waiter)
    return ""


def _short_future(fut: Any) -> str:
    cbs = getattr(fut, "_callbacks", None) or []
    return f"{type(fut).__name__}" + (f" ({len(cbs)} cb)" if len(cbs) > 1 else "")


def task_state(task: Any, current: Any, ready_owners: set[int]) -> str:
    """running | ready | waiting | done, as seen from the loop thread between steps."""
    if task.done():
        return "done"
    if task is current:
        return "running"
    if id(task) in ready_owners:
        return "ready"
    return "waiting"


def ready_owner_ids(loop: asyncio.AbstractEventLoop) -> set[int]:
    """ids of tasks that have a step or wake-up queued in the loop's ready queue."""
    ready = getattr(loop, "_ready", None)
    out: set[int] = set()
    if ready is None:
        return out
    for handle in list(ready):
        owner = getattr(getattr(handle, "_callback", None), "__self__", None)
        if owner is not None:
            out.add(id(owner))
    return out
