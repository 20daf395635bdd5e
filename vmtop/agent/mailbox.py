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
import heapq
import queue as stdqueue
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from vmtop.agent.step_hooks import sampled_call

_AQ_GET = asyncio.Queue.get.__code__
_TQ_GET = stdqueue.Queue.get.__code__
_CHAIN_DEPTH = 6  # how far down an await chain we look for Queue.get
SAMPLE_EVERY = 16  # dequeues per consumer check in the get_nowait hook (a power of two)


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


LONGEST_SECONDS = 0.002  # loop time a refresh spends reading queue lengths (mailbox sort)
LENGTH_BATCH = 512
ITEMS_MAX_AGE = 5.0  # seconds the copy of the tracked queues is reused by that round robin
FORGET_SECONDS = 0.001  # loop time a refresh spends dropping queues that were collected


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
        self.by_consumer: dict[int, set[int]] = {}  # id(consumer) -> ids of its queues
        self.multi: set[int] = set()  # ids of queues seen with more than one consumer
        self._nonempty: dict[int, tuple[int, QueueInfo]] = {}  # queue key -> last length read
        self._length_cursor = 0
        self._items: list[tuple[int, QueueInfo]] = []  # a copy of queues, for the round robin
        self._items_at = 0.0
        self._forget: list[tuple[int, QueueInfo]] = []  # the copy forget_dead walks
        self._forget_at = 0
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

        def sample(q: Any) -> None:
            # Looking up the current task costs ~0.3 µs: do it for one dequeue in
            # SAMPLE_EVERY. A busy consumer is still found within a few refreshes.
            try:
                task = current_task()
            except RuntimeError:
                task = None
            if task is not None:
                info = queues.get(id(q))
                if info is None or id(task) not in info.consumers:
                    note(q, task)

        get_nowait = sampled_call(a_get_nowait, SAMPLE_EVERY, sample)

        def get(q: Any, block: bool = True, timeout: float | None = None) -> Any:
            item = t_get(q, block, timeout)
            thread = current_thread()
            info = queues.get(id(q))
            if info is None or id(thread) not in info.consumers:
                note(q, thread)
            return item

        get.__wrapped__ = t_get  # type: ignore[attr-defined]
        self._originals = {"a": a_get_nowait, "t": t_get, "wa": get_nowait, "wt": get}
        asyncio.Queue.get_nowait = get_nowait  # type: ignore[method-assign]
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
                self._add(q, consumer)
        except Exception:
            pass  # never raise into the program's get()

    def _add(self, q: Any, consumer: Any) -> None:
        info = self.queues.get(id(q))
        if info is None or info.ref() is not q:
            try:
                ref = weakref.ref(q)
            except TypeError:
                return
            self._seq += 1
            info = self.queues[id(q)] = QueueInfo(ref, self._seq)
        if id(consumer) not in info.consumers:
            info.consumers[id(consumer)] = weakref.ref(consumer)
            self.by_consumer.setdefault(id(consumer), set()).add(id(q))
            if len(info.consumers) > 1:
                self.multi.add(id(q))

    def _drop(self, q_id: int, consumer_id: int) -> None:
        info = self.queues.get(q_id)
        if info is not None:
            info.consumers.pop(consumer_id, None)
        owned = self.by_consumer.get(consumer_id)
        if owned is not None:
            owned.discard(q_id)

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
                self._drop(seen[1], id(task))  # the task moved on to another queue
            if q is not None:
                with self._lock:
                    self._add(q, task)

    def scan_threads(self, frames: dict[int, FrameType], threads: dict[int, Any]) -> None:
        """Record queue.Queue consumers among thread stacks (``sys._current_frames()``)."""
        for ident, frame in frames.items():
            q = _queue_in_stack(frame)
            thread = threads.get(ident)
            if q is not None and thread is not None:
                with self._lock:
                    self._add(q, thread)

    def forget_dead(self, seconds: float = FORGET_SECONDS) -> None:
        """Drop queues that were garbage collected: a round robin over the tracked queues for
        at most ``seconds`` a refresh (a full walk of 100k queues held the loop ~50 ms)."""
        deadline = time.perf_counter() + seconds
        if self._forget_at >= len(self._forget):
            self._forget, self._forget_at = list(self.queues.items()), 0
        items, i = self._forget, self._forget_at
        with self._lock:
            while i < len(items) and time.perf_counter() < deadline:
                for key, info in items[i : i + LENGTH_BATCH]:
                    if info.ref() is None and self.queues.get(key) is info:
                        del self.queues[key]
                        self.multi.discard(key)
                        self._nonempty.pop(key, None)
                i += LENGTH_BATCH
            self._forget_at = i
            if i >= len(items):  # a whole pass: consumers left with no queue go too
                for cid in [c for c, owned in self.by_consumer.items() if not owned]:
                    del self.by_consumer[cid]
        if len(self._by_task) > 4 * max(1024, len(self.queues)):
            self._by_task.clear()

    # -- reading ----------------------------------------------------------------------------
    def queues_of(self, obj: Any) -> list[QueueInfo]:
        """Queues whose only live consumer is ``obj`` (its mailboxes)."""
        out = []
        for q_id in list(self.by_consumer.get(id(obj), ())):
            info = self.queues.get(q_id)
            if info is None or info.ref() is None:
                continue
            live = info.live_consumers()
            if len(live) == 1 and live[0] is obj:
                out.append(info)
        return out

    def mailbox_of(self, obj: Any) -> int | None:
        """Items waiting for ``obj`` (a task or thread), None when it consumes no known queue."""
        infos = self.queues_of(obj)
        if not infos:
            return None
        total = 0
        for info in infos:
            q = info.ref()
            n = queue_length(q) if q is not None else None
            total += n or 0
        return total

    def longest(self, limit: int, seconds: float = LONGEST_SECONDS) -> list[tuple[int, Any]]:
        """``(length, consumer)`` of the longest single-consumer queues (``len(q._queue)``).

        Lengths are read round-robin for at most ``seconds`` of loop time a refresh (the
        leaders every time), and the ranking is over the non-empty queues read so far: at
        100k queues a full pass takes a few refreshes instead of holding the loop 0.1 s."""
        now = time.monotonic()
        if now - self._items_at > ITEMS_MAX_AGE or not self._items:
            self._items, self._items_at = list(self.queues.items()), now
        items = self._items
        n = len(items)
        deadline = time.perf_counter() + seconds
        for key in list(self._nonempty):  # the current leaders: read again every refresh
            info = self.queues.get(key)
            if info is not None:
                self._read_length(key, info)
            else:
                self._nonempty.pop(key, None)
        done, start = 0, (self._length_cursor % n) if n else 0
        while done < n and time.perf_counter() < deadline:
            i = (start + done) % n
            for key, info in items[i : min(n, i + LENGTH_BATCH)]:
                self._read_length(key, info)
                done += 1
        self._length_cursor = start + done
        scored = [(length, info) for length, info in self._nonempty.values()]
        out = []
        for n, info in heapq.nlargest(limit * 2, scored, key=lambda x: x[0]):
            live = info.live_consumers()
            if len(live) == 1:
                out.append((n, live[0]))
        return out[:limit]

    def _read_length(self, key: int, info: QueueInfo) -> None:
        q = info.ref()
        length = 0
        if q is not None and len(info.consumers) == 1:
            try:
                length = len(q._queue)
            except Exception:
                length = 0
        if length:
            self._nonempty[key] = (length, info)
        else:
            self._nonempty.pop(key, None)

    def shared(self) -> list[tuple[QueueInfo, list[Any]]]:
        """Queues with more than one live consumer: they get rows of their own."""
        out = []
        for q_id in list(self.multi):
            info = self.queues.get(q_id)
            if info is None or info.ref() is None:
                continue
            consumers = info.live_consumers()
            if len(consumers) > 1:
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
