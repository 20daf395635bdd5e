"""Process detail (drill-down) and the one action that changes the target: cancel a task."""

from __future__ import annotations

import linecache
import logging
import reprlib
import sys
from types import FrameType
from typing import Any

from vmtop.agent import memory, tasks
from vmtop.agent.collector import Collector
from vmtop.agent.loops import call_in_loop
from vmtop.agent.mailbox import blocked_putters, queue_length
from vmtop.agent.threads import sample_threads

log = logging.getLogger("vmtop.agent")

LOCALS_PER_FRAME = 20
MAILBOX_PREVIEW = 10
_repr = reprlib.Repr()
_repr.maxstring = 80
_repr.maxother = 80
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6
_repr.maxlevel = 2


class NotFound(Exception):
    pass


def safe_repr(obj: Any) -> str:
    try:
        return _repr.repr(obj)
    except Exception as exc:  # a broken __repr__ in the target must not break the agent
        return f"<repr failed: {type(exc).__name__}>"


def frame_info(frame: FrameType, with_locals: bool = True) -> dict[str, Any]:
    loc = tasks.frame_location(frame)
    out: dict[str, Any] = {
        "function": loc.function,
        "file": loc.file,
        "line": loc.line,
        "code": linecache.getline(loc.file, loc.line).strip(),
    }
    if with_locals:
        try:
            items = list(frame.f_locals.items())[:LOCALS_PER_FRAME]
        except Exception:
            items = []
        out["locals"] = {k: safe_repr(v) for k, v in items}
    return out


def _mailbox_detail(collector: Collector, obj: Any) -> list[dict[str, Any]]:
    out = []
    for info in collector.mailboxes.queues_of(obj):
        q = info.ref()
        if q is None:
            continue
        items = list(getattr(q, "_queue", ()))[:MAILBOX_PREVIEW]
        out.append(
            {
                "queue": f"{type(q).__name__}#{info.seq}",
                "length": queue_length(q),
                "maxsize": getattr(q, "maxsize", None),
                "putters": blocked_putters(q),
                "preview": [safe_repr(x) for x in items],
            }
        )
    return out


def detail(collector: Collector, key: str, timeout: float = 1.0) -> dict[str, Any]:
    kind, _, ident = key.partition(":")
    if kind == "task" and ident.isdigit():
        task = collector.task_by_id(int(ident))
        if task is None:
            raise NotFound(f"no task {key} (finished, or never listed)")
        return call_in_loop(task.get_loop(), lambda: _task_detail(collector, key, task), timeout)
    if kind == "thread" and ident.isdigit():
        frames = sys._current_frames()
        for s in sample_threads(frames):
            if str(s.native_id or s.ident) == ident:
                stack: list[dict[str, Any]] = []
                frame = s.frame
                while frame is not None and len(stack) < 64:
                    stack.append(frame_info(frame, with_locals=len(stack) < 8))
                    frame = frame.f_back
                stack.reverse()
                return {
                    "key": key,
                    "kind": "thread",
                    "name": s.name,
                    "state": s.state,
                    "cpu": s.cpu,
                    "daemon": s.thread.daemon,
                    "stack": stack,
                    "mailbox": _mailbox_detail(collector, s.thread),
                    "memory": memory.estimate([], _frames(s.frame)),
                    "memory_note": memory.NOTE,
                }
        raise NotFound(f"no thread {key}")
    if kind == "queue" and ident.isdigit():
        for info, consumers in collector.mailboxes.shared():
            if info.seq == int(ident):
                q = info.ref()
                return {
                    "key": key,
                    "kind": "queue",
                    "name": f"{type(q).__name__}#{info.seq}",
                    "length": queue_length(q),
                    "putters": blocked_putters(q),
                    "consumers": [getattr(c, "get_name", lambda c=c: c.name)() for c in consumers],
                    "preview": [
                        safe_repr(x) for x in list(getattr(q, "_queue", ()))[:MAILBOX_PREVIEW]
                    ],
                }
        raise NotFound(f"no shared queue {key}")
    found = collector.adapters.detail(collector, key)  # actor:N (Pykka), trio:N (Trio)
    if found is not None:
        return found
    raise NotFound(f"bad process key {key!r}: expected task:N, thread:N or queue:N")


def _frames(frame: FrameType | None) -> list[FrameType]:
    out: list[FrameType] = []
    while frame is not None and len(out) < 32:
        out.append(frame)
        frame = frame.f_back
    return out


def _task_detail(collector: Collector, key: str, task: Any) -> dict[str, Any]:
    frames = tasks.chain_frames(task)
    steps, seconds = collector.steps.get(task)
    mailbox = _mailbox_detail(collector, task)
    infos = collector.mailboxes.queues_of(task)
    roots = [q for q in (i.ref() for i in infos) if q is not None]
    return {
        "key": key,
        "kind": "task",
        "name": task.get_name(),
        "coro": tasks.coro_name(task),
        "state": tasks.task_state(task, None, tasks.ready_owner_ids(task.get_loop())),
        "done": task.done(),
        "cancelling": bool(getattr(task, "cancelling", lambda: 0)()),
        "reductions_total": steps,
        "time_total": seconds,
        "waiting_on": tasks.describe_waiter(task),
        "await_chain": [frame_info(f) for f in frames],
        "mailbox": mailbox,
        "memory": memory.estimate(roots, frames),
        "memory_note": memory.NOTE,
    }


def cancel(collector: Collector, key: str, peer: str, timeout: float = 1.0) -> dict[str, Any]:
    kind, _, ident = key.partition(":")
    if kind != "task" or not ident.isdigit():
        raise NotFound(f"only tasks can be cancelled (got {key!r})")
    task = collector.task_by_id(int(ident))
    if task is None or task.done():
        raise NotFound(f"no running task {key}")

    def do_cancel() -> bool:
        if task.done():  # checked on the loop thread: the task may have just finished
            raise NotFound(f"no running task {key}")
        log.warning(
            "vmtop: cancelling task %r (%s) at the request of %s", task.get_name(), key, peer
        )
        return bool(task.cancel(msg=f"cancelled by vmtop ({peer})"))

    accepted = call_in_loop(task.get_loop(), do_cancel, timeout)
    return {"key": key, "name": task.get_name(), "cancel_requested": accepted}
