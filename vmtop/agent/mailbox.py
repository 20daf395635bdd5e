"""Mailboxes: which process consumes which queue.

A queue has no owner. A task suspended in ``asyncio.Queue.get`` (found by walking its await
chain to the frame whose code is ``Queue.get.__code__``; ``f_locals["self"]`` is the queue) is
that queue's consumer, and we remember the last consumers seen: a consumer that is busy with a
message is still the queue's consumer while its backlog grows. A queue with one known live
consumer is shown as that task's mailbox; a queue with several gets its own row.
Threads blocked in ``queue.Queue.get`` are found the same way from their stacks.
"""

from __future__ import annotations

import asyncio
import queue as stdqueue
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

_AQ_GET = asyncio.Queue.get.__code__
_TQ_GET = stdqueue.Queue.get.__code__
_CHAIN_DEPTH = 6  # how far down an await chain we look for Queue.get


@dataclass
class QueueInfo:
    ref: Any  # weakref to the queue
    seq: int
    consumers: dict[int, Any] = field(default_factory=dict)  # id(process) -> weakref/name

    def queue(self) -> Any:
        return self.ref()

    def live_consumers(self) -> list[Any]:
        out = []
        for key, ref in list(self.consumers.items()):
            obj = ref() if callable(ref) else ref
            gone = obj is None or (hasattr(obj, "done") and obj.done())
            if gone or (hasattr(obj, "is_alive") and not obj.is_alive()):
                del self.consumers[key]
                continue
            out.append(obj)
        return out


def queue_length(q: Any) -> int | None:
    try:
        return int(q.qsize())
    except Exception:
        return None


def blocked_putters(q: Any) -> int:
    putters = getattr(q, "_putters", None)
    if putters is None:  # queue.Queue: threads waiting on not_full
        cond = getattr(q, "not_full", None)
        return len(getattr(cond, "_waiters", ()) or ())
    return sum(1 for f in list(putters) if not f.done())


class MailboxTracker:
    """Remembers queue consumers across snapshots (ids of queues and processes, weakly).

    Two sources: a scan of suspended tasks (finds consumers idle in ``get()`` since before we
    attached) and, while attached, a wrapper on ``asyncio.Queue.get_nowait`` (which
    ``Queue.get`` itself ends with) and ``queue.Queue.get`` that notes who dequeues — so a
    consumer that never suspends because its backlog is long is still found.
    """

    def __init__(self) -> None:
        self.queues: dict[int, QueueInfo] = {}
        self._by_task: dict[int, tuple[Any, int]] = {}  # id(task) -> (fut_waiter, id(queue))
        self._seq = 0
        self._originals: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- dequeue hooks ----------------------------------------------------------------------
    def install(self) -> None:
        if self._originals:
            return
        a_get_nowait = asyncio.Queue.get_nowait
        t_get = stdqueue.Queue.get
        queues = self.queues
        note = self._note
        current_task = asyncio.current_task
        current_thread = threading.current_thread

        def get_nowait(q: Any) -> Any:
            item = a_get_nowait(q)
            try:
                task = current_task()
            except RuntimeError:
                task = None
            if task is not None:
                info = queues.get(id(q))
                if info is None or id(task) not in info.consumers:
                    note(q, task)
            return item

        def get(q: Any, block: bool = True, timeout: float | None = None) -> Any:
            item = t_get(q, block, timeout)
            thread = current_thread()
            info = queues.get(id(q))
            if info is None or id(thread) not in info.consumers:
                note(q, thread)
            return item

        get_nowait.__wrapped__ = a_get_nowait  # type: ignore[attr-defined]
        get.__wrapped__ = t_get  # type: ignore[attr-defined]
        self._originals = {"a": a_get_nowait, "t": t_get, "wa": get_nowait, "wt": get}
        asyncio.Queue.get_nowait = get_nowait  # type: ignore[method-assign,assignment]
        stdqueue.Queue.get = get  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        o = self._originals
        if not o:
            return
        if asyncio.Queue.get_nowait is o["wa"]:
            asyncio.Queue.get_nowait = o["a"]  # type: ignore[method-assign]
        if stdqueue.Queue.get is o["wt"]:
            stdqueue.Queue.get = o["t"]  # type: ignore[method-assign]
        self._originals = {}

    def _note(self, q: Any, consumer: Any) -> None:
        try:
            with self._lock:
                info = self._info(q)
                if info is not None:
                    info.consumers[id(consumer)] = weakref.ref(consumer)
        except Exception:
            pass  # never raise into the program's get()

    def _info(self, q: Any) -> QueueInfo | None:
        info = self.queues.get(id(q))
        if info is not None and info.ref() is q:
            return info
        try:
            ref = weakref.ref(q)
        except TypeError:
            return None
        self._seq += 1
        info = self.queues[id(q)] = QueueInfo(ref, self._seq)
        return info

    # -- asyncio --------------------------------------------------------------------------
    def scan_tasks(self, tasks: Iterable[Any]) -> None:
        """Record the queue each task is suspended on (loop thread). Cheap when nothing moved:
        a task whose ``_fut_waiter`` is the one seen last time is not walked again."""
        by_task = self._by_task
        for task in tasks:
            waiter = getattr(task, "_fut_waiter", None)
            if waiter is None:
                continue
            seen = by_task.get(id(task))
            if seen is not None and seen[0] is waiter:
                continue
            q = _queue_awaited_by(task.get_coro())
            by_task[id(task)] = (waiter, id(q) if q is not None else 0)
            if q is not None and seen is not None and seen[1] not in (0, id(q)):
                old = self.queues.get(seen[1])  # the task moved on to another queue
                if old is not None:
                    old.consumers.pop(id(task), None)
            if q is not None:
                info = self._info(q)
                if info is not None:
                    info.consumers[id(task)] = weakref.ref(task)

    def scan_threads(self, frames: dict[int, FrameType], threads: dict[int, Any]) -> None:
        """Record queue.Queue consumers among thread stacks (``sys._current_frames()``)."""
        for ident, frame in frames.items():
            q = _queue_in_stack(frame)
            thread = threads.get(ident)
            if q is not None and thread is not None:
                info = self._info(q)
                if info is not None:
                    info.consumers[id(thread)] = weakref.ref(thread)

    def forget_dead(self) -> None:
        for key, info in list(self.queues.items()):
            if info.ref() is None:
                del self.queues[key]
        if len(self._by_task) > 4 * max(1024, len(self.queues)):
            self._by_task.clear()

    # -- reading ----------------------------------------------------------------------------
    def mailboxes(self) -> dict[int, list[QueueInfo]]:
        """id(process) -> queues it is the only live consumer of."""
        out: dict[int, list[QueueInfo]] = {}
        for info in list(self.queues.values()):
            consumers = info.live_consumers()
            if len(consumers) == 1:
                out.setdefault(id(consumers[0]), []).append(info)
        return out

    def shared(self) -> list[tuple[QueueInfo, list[Any]]]:
        """Queues with more than one live consumer: they get rows of their own."""
        out = []
        for info in list(self.queues.values()):
            consumers = info.live_consumers()
            if len(consumers) > 1 and info.ref() is not None:
                out.append((info, consumers))
        return out


def _queue_awaited_by(coro: Any) -> Any:
    depth = 0
    while coro is not None and depth < _CHAIN_DEPTH:
        code = getattr(coro, "cr_code", None)
        if code is _AQ_GET:
            frame = coro.cr_frame
            return frame.f_locals.get("self") if frame is not None else None
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        depth += 1
    return None


def _queue_in_stack(frame: FrameType | None) -> Any:
    depth = 0
    while frame is not None and depth < 12:
        if frame.f_code is _TQ_GET:
            return frame.f_locals.get("self")
        frame = frame.f_back
        depth += 1
    return None


def mailbox_of(
    tracker: MailboxTracker, mailboxes: dict[int, list[QueueInfo]], obj: Any
) -> int | None:
    """Items waiting for ``obj`` (a task or thread), or None when it consumes no known queue."""
    infos = mailboxes.get(id(obj))
    if not infos:
        return None
    total = 0
    for info in infos:
        q = info.ref()
        n = queue_length(q) if q is not None else None
        if n is not None:
            total += n
    return total
