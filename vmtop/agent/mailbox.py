"""Mailboxes: which process consumes which queue.

A queue has no owner. Three ways tell who consumes it, and we remember the consumers seen: a
consumer that is busy with a message is still the queue's consumer while its backlog grows.

- **Dequeues** (while a client is attached): ``asyncio.Queue.get_nowait`` (which
  ``Queue.get`` ends with) is wrapped by a ``MarkedCall``: the first dequeue from each queue
  after a refresh looks up the current task, every other one costs a probe of a table of
  marks. ``queue.Queue.get`` is wrapped too; it also counts the items each thread took (a
  thread's reductions, :meth:`MailboxTracker.thread_gets`).
- **Suspended in get**: a task whose await chain reaches ``Queue.get`` (its frame's
  ``self`` is the queue), a thread whose stack is in ``queue.Queue.get``.
- **What it holds**: a frame whose code calls ``X.get(...)`` / ``X.get_nowait()`` on a local,
  a global or an attribute of one (``q.get()``, ``JOBS.get()``, ``self.inbox.get()``; read
  from the bytecode once per code object) and holds a queue there. So a consumer that sleeps
  between messages, or has not taken its first one yet, is known at the first refresh.

A queue with one known live consumer is shown as that process's mailbox; a queue with several
gets its own row.
"""

from __future__ import annotations

import asyncio
import dis
import gc
import heapq
import queue as stdqueue
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any

from vmtop.agent.objects import attribute
from vmtop.agent.step_hooks import use_c_hooks

_AQ_GET = asyncio.Queue.get.__code__
_TQ_GET = stdqueue.Queue.get.__code__
_CHAIN_DEPTH = 6  # how far down an await chain we look for Queue.get
_HELD_DEPTH = 16  # frames of an await chain whose holdings are looked at
_STACK_DEPTH = 64  # ... of a thread's stack (threads are few; their code sits deeper)
FRESH_MAX = 4096  # queues found since the last mailbox sort, read at the next one
_installed: list[MailboxTracker] = []  # the tracker whose hooks are in (one at a time)
ASYNC_QUEUES: tuple[type, ...] = (asyncio.Queue,)
THREAD_QUEUES: tuple[type, ...] = tuple(
    {stdqueue.Queue, stdqueue.SimpleQueue, getattr(stdqueue, "_PySimpleQueue", stdqueue.Queue)}
)


@dataclass(slots=True)
class QueueInfo:
    """A tracked queue as :meth:`MailboxTracker.queues_of` and ``shared()`` return it: made
    for the reader, not kept (the tracker keeps ints and weak references in flat dicts)."""

    ref: Any  # weakref to the queue
    seq: int
    key: int = 0  # id of the queue: its key in MailboxTracker.queues

    def queue(self) -> Any:
        return self.ref()


# A queue's consumers, or a consumer's queues: one id (the common case), or an id -> None dict
# for several. Neither is tracked by the cyclic GC (CPython leaves a dict that holds no
# container untracked), so they add nothing to what a collection walks.
Ids = int | dict[int, None]


def _ids(v: Ids | None) -> list[int]:
    if v is None:
        return []
    return [v] if isinstance(v, int) else list(v)


def _has(v: Ids | None, x: int) -> bool:
    if isinstance(v, int):
        return v == x
    return v is not None and x in v


def _with(v: Ids | None, x: int) -> Ids:
    if v is None:
        return x
    if isinstance(v, int):
        return v if v == x else {v: None, x: None}
    v[x] = None
    return v


def _without(v: Ids | None, x: int) -> Ids | None:
    if v is None or isinstance(v, int):
        return None if v == x else v
    v.pop(x, None)
    if len(v) == 1:
        return next(iter(v))
    return v or None


def weak_ref_maker() -> Callable[[Any], Any]:
    """``weakref.ref`` as the tracker makes them: left out of the cyclic GC when the C
    extension is in (``_hooks.untracked_ref``: a reference without a callback refers to
    nothing strongly), else plain (one tracked object each)."""
    if use_c_hooks():
        try:
            from vmtop.agent._hooks import untracked_ref

            return untracked_ref
        except ImportError:  # an extension built before untracked_ref
            pass
    return weakref.ref


def _ended(obj: Any) -> bool:
    done = getattr(obj, "done", None)
    if done is not None:
        return bool(done())
    is_alive = getattr(obj, "is_alive", None)
    return is_alive is not None and not is_alive()


def marked_call(original: Callable[..., Any], sample: Callable[[Any], object]) -> Any:
    """A stand-in for the method ``original`` that also calls ``sample(self)`` at the first
    call on each ``self`` since the last ``reset()``; in C when built, else in Python."""
    if use_c_hooks():
        from vmtop.agent._hooks import MarkedCall

        return MarkedCall(original, sample)
    seen: set[int] = set()

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        key = id(self)
        if key not in seen:
            seen.add(key)
            try:
                sample(self)
            except Exception:
                pass
        return result

    call.__wrapped__ = original  # type: ignore[attr-defined]
    call.reset = seen.clear  # type: ignore[attr-defined]
    return call


def set_type_attr_safe(cls: type, name: str, value: Any) -> None:
    """``cls.name = value`` for a type that may refuse it (never raises)."""
    try:
        from vmtop.agent._hooks import set_type_attr

        set_type_attr(cls, name, value)
    except Exception:
        pass


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
LENGTH_BATCH = 512  # queues read between two reads of the clock
LEADERS_MIN = 256  # non-empty queues remembered (re-read every mailbox sort): 4x the rows, or this
FORGET_SECONDS = 0.001  # loop time a refresh spends dropping queues that were collected
FORGET_BATCH = 256  # queues looked at between two reads of the clock


def thread_gets_now() -> dict[int, int]:
    """Items taken per thread so far, from the tracker whose hooks are in ({} when none is):
    where a new client's first interval starts."""
    return _installed[0].all_thread_gets() if _installed else {}


class MailboxTracker:
    """Remembers queue consumers across snapshots (ids of queues and processes, weakly).

    Sources: the dequeue hooks while attached (``asyncio.Queue.get_nowait`` through a
    :func:`marked_call`, ``queue.Queue.get``), a scan of suspended tasks and thread stacks
    (consumers waiting in ``get()``), and what tasks and threads hold (:func:`queues_held`).

    Everything per queue, consumer and scanned task lives in flat dicts keyed by ``id()``
    whose values are ints, untracked dicts of ints (:data:`Ids`) and weak references that the
    GC does not track (:func:`weak_ref_maker`): no object per queue or task that a full
    collection has to walk (at 100k queues, ~8 tracked objects each pushed the program into
    0.4-0.8 s full collections while the scan discovered them; docs/benchmarks.md).
    """

    def __init__(self) -> None:
        self._ref = weak_ref_maker()
        self.queues: dict[int, Any] = {}  # id(queue) -> weak reference to it
        self.seqs: dict[int, int] = {}  # id(queue) -> its number (``q<seq>`` in rows)
        self.consumers: dict[int, Ids] = {}  # id(queue) -> id(s) of its consumers
        self.by_consumer: dict[int, Ids] = {}  # id(consumer) -> id(s) of its queues
        self._consumer_refs: dict[int, Any] = {}  # id(consumer) -> weak reference to it
        self.multi: set[int] = set()  # ids of queues with more than one consumer
        self._seq = 0
        # The idle-consumer scan: a task whose ``_fut_waiter`` is the one seen last time is
        # not walked again; the queue it was suspended in get() of, if any.
        self._waiters: dict[int, Any] = {}  # id(task) -> weak reference to its waiter
        self._in_get: dict[int, int] = {}  # id(task) -> id(queue)
        # Every key of ``queues`` once, in no order: what the round robins walk, with a
        # cursor each, instead of copying ``queues`` (100k entries: 5-10 ms of loop time);
        # beside it, each one's weak reference (the newer one in ``queues`` replaces it when
        # forget_dead finds it dead): the length round robin reads no dict for an empty queue.
        self._order: list[int] = []
        self._order_refs: list[Any] = []
        self._read_at = 0  # where longest() reads lengths next
        self._forget_at = 0  # where forget_dead() looks next
        self._nonempty: dict[int, int] = {}  # queue key -> last length read (the leaders)
        self._fresh: list[int] = []  # queues new since the last longest()
        self._touched: list[int] = []  # ids of queues dequeued from since the last longest()
        self._originals: dict[str, Any] = {}
        self._thread_gets: dict[int, int] = {}  # thread ident -> queue.Queue items taken
        self._thread_seen: set[tuple[int, int]] = set()  # (id(queue), ident) since the refresh
        self._lock = threading.Lock()

    # -- dequeue hooks ----------------------------------------------------------------------
    def install(self) -> None:
        if self._originals:
            return
        a_get_nowait = asyncio.Queue.get_nowait
        t_get = stdqueue.Queue.get
        knows = self._knows
        note = self._note
        current_task = asyncio.current_task
        current_thread = threading.current_thread
        get_ident = threading.get_ident
        gets = self._thread_gets
        seen = self._thread_seen
        touched = self._touched

        def sample(q: Any) -> None:
            # The first dequeue from ``q`` since the last refresh (the MarkedCall's mark):
            # who takes from it? Every other dequeue costs the mark's probe only. Its length
            # is read again at the next mailbox sort.
            if len(touched) < FRESH_MAX:
                touched.append(id(q))
            try:
                task = current_task()
            except RuntimeError:
                task = None
            if task is not None and not knows(q, task):  # ids are reused once freed
                note(q, task)

        get_nowait = marked_call(a_get_nowait, sample)

        def took(q: Any) -> None:
            ident = get_ident()
            gets[ident] = gets.get(ident, 0) + 1  # only this thread writes this key
            key = (id(q), ident)
            if key not in seen:
                seen.add(key)
                if len(touched) < FRESH_MAX:
                    touched.append(id(q))
                note(q, current_thread())

        def get(q: Any, block: bool = True, timeout: float | None = None) -> Any:
            item = t_get(q, block, timeout)
            took(q)
            return item

        get.__wrapped__ = t_get  # type: ignore[attr-defined]
        self._originals = {"a": a_get_nowait, "t": t_get, "wa": get_nowait, "wt": get}
        asyncio.Queue.get_nowait = get_nowait  # type: ignore[method-assign]
        stdqueue.Queue.get = get  # type: ignore[method-assign,assignment]
        self._wrap_simple_queue(took)
        _installed[:] = [self]

    def _wrap_simple_queue(self, took: Callable[[Any], None]) -> None:
        """``_queue.SimpleQueue`` is a C type that refuses new attributes: its ``get`` and
        ``get_nowait`` are wrapped through the C extension's ``set_type_attr`` (the type's dict
        and ``PyType_Modified``, as ``type.__setattr__`` does), only with the C hooks."""
        sq = stdqueue.SimpleQueue
        if not use_c_hooks() or "get" not in vars(sq) or "get_nowait" not in vars(sq):
            return
        from vmtop.agent._hooks import set_type_attr

        s_get, s_get_nowait = vars(sq)["get"], vars(sq)["get_nowait"]

        def get(q: Any, block: bool = True, timeout: float | None = None) -> Any:
            item = s_get(q, block, timeout)
            took(q)
            return item

        def get_nowait(q: Any) -> Any:
            item = s_get_nowait(q)
            took(q)
            return item

        get.__wrapped__ = s_get  # type: ignore[attr-defined]
        get_nowait.__wrapped__ = s_get_nowait  # type: ignore[attr-defined]
        try:
            set_type_attr(sq, "get", get)
            set_type_attr(sq, "get_nowait", get_nowait)
        except TypeError:  # not a heap type here: its items are not counted
            set_type_attr_safe(sq, "get", s_get)
            return
        self._originals.update(s=(s_get, s_get_nowait), ws=(get, get_nowait))

    def uninstall(self) -> None:
        o = self._originals
        if not o:
            return
        if asyncio.Queue.get_nowait is o["wa"]:
            asyncio.Queue.get_nowait = o["a"]  # type: ignore[method-assign]
        if stdqueue.Queue.get is o["wt"]:
            stdqueue.Queue.get = o["t"]  # type: ignore[method-assign]
        if "s" in o:
            sq = stdqueue.SimpleQueue
            for name, original, ours in zip(("get", "get_nowait"), o["s"], o["ws"], strict=True):
                if vars(sq).get(name) is ours:
                    set_type_attr_safe(sq, name, original)
        self._originals = {}
        if _installed and _installed[0] is self:
            _installed.clear()

    def new_interval(self) -> None:
        """A refresh: every queue's next dequeue looks up its consumer again (a new consumer,
        or a second one, is seen from then on)."""
        hook = self._originals.get("wa")
        if hook is not None:
            hook.reset()
        self._thread_seen.clear()

    def thread_gets(self, ident: int) -> int | None:
        """Items the thread ``ident`` (``threading.get_ident()``) took from any
        ``queue.Queue`` (and subclasses: ``LifoQueue``, ``PriorityQueue``) through ``get()`` or
        ``get_nowait()``, and from a ``queue.SimpleQueue`` (with the C hooks only), since the
        first client attached; None while no client is attached."""
        if not self._originals:
            return None
        return self._thread_gets.get(ident, 0)

    def all_thread_gets(self) -> dict[int, int]:
        """A copy of :meth:`thread_gets` for every thread that took an item."""
        return dict(self._thread_gets)

    def forget_threads(self, alive: Iterable[int]) -> None:
        """Drop the counts of threads that ended (an ident is reused by a later thread)."""
        keep = set(alive)
        for ident in [i for i in self._thread_gets if i not in keep]:
            self._thread_gets.pop(ident, None)

    def _note(self, q: Any, consumer: Any) -> None:
        try:
            with self._lock:
                self._add(q, consumer)
        except Exception:
            pass  # never raise into the program's get()

    def _knows(self, q: Any, consumer: Any) -> bool:
        """Whether ``consumer`` is a known consumer of ``q`` (the dequeue hook's fast path,
        on the program's thread: reads only)."""
        ref = self.queues.get(id(q))
        cref = self._consumer_refs.get(id(consumer))
        return (
            ref is not None
            and cref is not None
            and ref() is q
            and cref() is consumer
            and _has(self.consumers.get(id(q)), id(consumer))
        )

    def _add(self, q: Any, consumer: Any) -> None:
        key = id(q)
        ref = self.queues.get(key)
        if ref is None or ref() is not q:
            try:
                new = self._ref(q)
            except TypeError:
                return
            if ref is None:
                self._order.append(key)
                self._order_refs.append(new)
            else:  # a collected queue's id, now another queue's: the old one's entries go
                self._clear_queue(key)
            self.queues[key] = new
            self._seq += 1
            self.seqs[key] = self._seq
            if len(self._fresh) < FRESH_MAX:  # beyond, the round robin reaches it
                self._fresh.append(key)
        cid = id(consumer)
        cref = self._consumer_refs.get(cid)
        if cref is None or cref() is not consumer:
            try:
                new_c = self._ref(consumer)
            except TypeError:
                return
            if cref is not None:  # a gone consumer's id, now ``consumer``'s
                self._forget_consumer(cid)
            self._consumer_refs[cid] = new_c
        cons = self.consumers.get(key)
        if not _has(cons, cid):
            cons = self.consumers[key] = _with(cons, cid)
            self.by_consumer[cid] = _with(self.by_consumer.get(cid), key)
            if type(cons) is not int:
                self.multi.add(key)

    def _drop(self, q_id: int, consumer_id: int) -> None:
        """Forget that ``consumer_id`` takes from ``q_id`` (under ``_lock``); a consumer left
        with no queue goes from ``by_consumer`` at once (no pass over all consumers)."""
        cons = _without(self.consumers.get(q_id), consumer_id)
        if cons is None:
            self.consumers.pop(q_id, None)
        else:
            self.consumers[q_id] = cons
        if type(cons) is not dict:
            self.multi.discard(q_id)
        self._unown(q_id, consumer_id)

    def _unown(self, q_id: int, consumer_id: int) -> None:
        owned = _without(self.by_consumer.get(consumer_id), q_id)
        if owned is None:
            self.by_consumer.pop(consumer_id, None)
            self._consumer_refs.pop(consumer_id, None)
        else:
            self.by_consumer[consumer_id] = owned

    def _forget_consumer(self, consumer_id: int) -> None:
        for q_id in _ids(self.by_consumer.get(consumer_id)):
            self._drop(q_id, consumer_id)
        self.by_consumer.pop(consumer_id, None)
        self._consumer_refs.pop(consumer_id, None)

    def _clear_queue(self, key: int) -> None:
        """Forget the consumers and the length read of queue ``key`` (under ``_lock``)."""
        for cid in _ids(self.consumers.pop(key, None)):
            self._unown(key, cid)
        self.multi.discard(key)
        self._nonempty.pop(key, None)

    # -- asyncio --------------------------------------------------------------------------
    def scan_tasks(self, tasks: Iterable[Any]) -> None:
        """Record the queue each task is suspended on, or else the queues it holds and takes
        from (loop thread). Cheap when nothing moved: a task whose ``_fut_waiter`` is the one
        seen last time is not walked again."""
        waiters = self._waiters
        in_get = self._in_get
        ref = self._ref
        for task in tasks:
            waiter = getattr(task, "_fut_waiter", None)
            if waiter is None:
                continue
            key = id(task)
            seen = waiters.get(key)
            if seen is not None and seen() is waiter:
                continue
            coro = task.get_coro()
            q = _queue_awaited_by(coro)
            left = 0
            try:
                waiters[key] = ref(waiter)
            except TypeError:
                pass
            else:
                was = in_get.pop(key, 0)
                if q is not None:
                    in_get[key] = id(q)
                    left = was if seen is not None else 0
            held = [q] if q is not None else queues_held(_chain_frames(coro), ASYNC_QUEUES)
            moved = left not in (0, id(q))
            if held or moved:
                with self._lock:
                    if moved:
                        self._drop(left, key)  # the task moved on to another queue
                    for q in held:
                        self._add(q, task)

    def scan_threads(self, frames: dict[int, FrameType], threads: dict[int, Any]) -> None:
        """Record queue consumers among thread stacks (``sys._current_frames()``): a thread
        in ``queue.Queue.get``, or one whose frames hold a queue they take from (a
        ``SimpleQueue`` too, whose C ``get`` leaves no frame)."""
        for ident, frame in frames.items():
            thread = threads.get(ident)
            if thread is None:
                continue
            q = _queue_in_stack(frame)
            held = [q] if q is not None else queues_held(_stack(frame), THREAD_QUEUES)
            if held:
                with self._lock:
                    for q in held:
                        self._add(q, thread)

    def forget_dead(self, seconds: float = FORGET_SECONDS) -> None:
        """Drop queues that were garbage collected, and the ended consumers of a queue that
        has several: a round robin over the tracked queues (``_order``, no copy), a batch of
        ``FORGET_BATCH`` at a time, for at most ``seconds`` a refresh and at most one pass (a
        full walk of 100k queues held the loop ~50 ms)."""
        deadline = time.perf_counter() + seconds
        order = self._order
        refs = self._order_refs
        queues = self.queues
        multi = self.multi
        with self._lock:
            i = self._forget_at if self._forget_at < len(order) else 0
            first = True
            while i < len(order) and (first or time.perf_counter() < deadline):
                first = False
                end = min(i + FORGET_BATCH, len(order))
                dead = []
                for j in range(i, end):
                    key = order[j]
                    if refs[j]() is None:
                        current = queues.get(key)
                        if current is not None and current() is not None:
                            refs[j] = current  # its id went to a newer queue
                        else:
                            dead.append(key)
                            self._forget_queue(key)
                            continue
                    if key in multi:
                        # Consumers that ended: a queue that outlives many (a task per
                        # request) would keep one entry for each. A queue's only consumer
                        # stays until the queue goes: one entry per queue at most.
                        for cid in self._ended_consumers(key):
                            self._drop(key, cid)
                if not dead:
                    i = end
                    continue
                gone = set(dead)
                kept = [j for j in range(i, end) if order[j] not in gone]
                kept_keys = [order[j] for j in kept]
                kept_refs = [refs[j] for j in kept]
                r = len(dead)
                if len(order) - end >= r:  # the last r fill the gap: looked at next
                    kept_keys += order[-r:]
                    kept_refs += refs[-r:]
                    del order[-r:], refs[-r:]
                order[i:end] = kept_keys
                refs[i:end] = kept_refs
                i += len(kept)
            self._forget_at = i
        if len(self._waiters) > 4 * max(1024, len(self.queues)):
            self._waiters.clear()
            self._in_get.clear()

    def _forget_queue(self, key: int) -> None:
        """A collected queue's entries (under ``_lock``; ``forget_dead`` takes it from
        ``_order``)."""
        self._clear_queue(key)
        self.queues.pop(key, None)
        self.seqs.pop(key, None)

    # -- reading ----------------------------------------------------------------------------
    def consumer_ids(self, q_id: int) -> list[int]:
        """Ids of the consumers known for the queue ``q_id`` (ended ones too, until dropped)."""
        return _ids(self.consumers.get(q_id))

    def _live_consumers(self, q_id: int) -> list[Any]:
        """The consumers of ``q_id`` that did not end (the ended ones go in forget_dead's
        pass, which also keeps ``by_consumer`` in step)."""
        refs = self._consumer_refs
        out = []
        for cid in _ids(self.consumers.get(q_id)):
            ref = refs.get(cid)
            obj = ref() if ref is not None else None
            if obj is not None and not _ended(obj):
                out.append(obj)
        return out

    def _ended_consumers(self, q_id: int) -> list[int]:
        """Ids of the consumers of ``q_id`` that ended (a finished task, a thread that
        returned, one collected)."""
        refs = self._consumer_refs
        out = []
        for cid in _ids(self.consumers.get(q_id)):
            ref = refs.get(cid)
            obj = ref() if ref is not None else None
            if obj is None or _ended(obj):
                out.append(cid)
        return out

    def _info(self, key: int) -> QueueInfo | None:
        ref = self.queues.get(key)
        if ref is None or ref() is None:
            return None
        return QueueInfo(ref, self.seqs.get(key, 0), key)

    def queues_of(self, obj: Any) -> list[QueueInfo]:
        """Queues whose only live consumer is ``obj`` (its mailboxes)."""
        out = []
        for q_id in _ids(self.by_consumer.get(id(obj))):
            info = self._info(q_id)
            if info is None:
                continue
            live = self._live_consumers(q_id)
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

        Read every time: the queues found since the last call, the ones dequeued from since
        then (the dequeue marks), and the longest ones known (at most ``4 * limit`` or
        ``LEADERS_MIN`` of them). The others are read round-robin for at most ``seconds`` of
        loop time a call and one pass (at 100k queues a pass takes a few calls), walking
        ``_order`` with a cursor: no work here grows with the number of queues."""
        queues = self.queues
        consumers = self.consumers
        fresh, self._fresh = self._fresh, []
        touched = self._touched[:]
        del self._touched[: len(touched)]
        for key in fresh:
            self._read_length(key)
        for key in touched:
            if key in queues:
                self._read_length(key)
        for key in list(self._nonempty):  # the leaders: read again
            self._read_length(key)
        order = self._order
        refs = self._order_refs
        n = len(order)
        deadline = time.perf_counter() + seconds
        pos = self._read_at if self._read_at < n else 0
        nonempty = self._nonempty
        done = 0
        while done < n and time.perf_counter() < deadline:
            end = pos + min(LENGTH_BATCH, n - done)
            keys = order[pos:end]
            if not keys:  # past the end (the list shrank meanwhile): wrap
                if pos == 0:
                    break
                pos = 0
                continue
            for key, ref in zip(keys, refs[pos:end], strict=False):
                # _read_length, inlined: the hot loop of a mailbox sort (no dict read for
                # an empty queue). A dead reference is forget_dead's to sort out (its id may
                # be a newer queue's already: that one was read when found).
                q = ref()
                if q is None:
                    continue
                try:
                    length = len(q._queue)
                except Exception:
                    length = 0
                if length and type(consumers.get(key)) is int:
                    nonempty[key] = length
                elif nonempty:
                    nonempty.pop(key, None)
            done += len(keys)
            pos += len(keys)
            if pos >= len(order):
                pos = 0
        self._read_at = pos
        keep = max(LEADERS_MIN, 4 * limit)
        if len(self._nonempty) > keep:  # bounded: the shorter ones wait for the round robin
            self._nonempty = dict(heapq.nlargest(keep, self._nonempty.items(), key=_second))
        out = []
        for key, length in heapq.nlargest(limit * 2, self._nonempty.items(), key=_second):
            live = self._live_consumers(key)
            if len(live) == 1:
                out.append((length, live[0]))
        return out[:limit]

    def _read_length(self, key: int) -> None:
        ref = self.queues.get(key)
        q = ref() if ref is not None else None
        length = 0
        if q is not None and type(self.consumers.get(key)) is int:
            try:
                length = len(q._queue)
            except Exception:
                length = 0
        if length:
            self._nonempty[key] = length
        else:
            self._nonempty.pop(key, None)

    def shared(self) -> list[tuple[QueueInfo, list[Any]]]:
        """Queues with more than one live consumer: they get rows of their own."""
        out = []
        for q_id in list(self.multi):
            info = self._info(q_id)
            if info is None:
                continue
            consumers = self._live_consumers(q_id)
            if len(consumers) > 1:
                out.append((info, consumers))
        return out


def _second(item: tuple[int, int]) -> int:
    return item[1]


def _queue_awaited_by(coro: Any) -> Any:
    depth = 0
    while coro is not None and depth < _CHAIN_DEPTH:
        code = getattr(coro, "cr_code", None)
        if code is _AQ_GET:
            return _get_self(coro)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        depth += 1
    return None


def _get_self(coro: Any) -> Any:
    """The queue a suspended ``asyncio.Queue.get`` coroutine belongs to (its ``self``).

    Read from the coroutine's referents (its locals and value stack: ``self``, the getter
    future and what it awaits), not from ``cr_frame.f_locals``: that would make a frame
    object and, on 3.11/3.12, a dict of its locals that stays on the frame as long as the
    task waits (two GC-tracked objects per idle consumer, made by us)."""
    for obj in gc.get_referents(coro):
        if isinstance(obj, asyncio.Queue):
            return obj
    return None


def _queue_in_stack(frame: FrameType | None) -> Any:
    depth = 0
    while frame is not None and depth < 12:
        if frame.f_code is _TQ_GET:
            return frame.f_locals.get("self")
        frame = frame.f_back
        depth += 1
    return None


def _chain_frames(coro: Any) -> list[FrameType]:
    """Suspended frames of an await chain, outermost first (at most ``_HELD_DEPTH``)."""
    out: list[FrameType] = []
    while coro is not None and len(out) < _HELD_DEPTH:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            out.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return out


def _stack(frame: FrameType | None) -> list[FrameType]:
    out: list[FrameType] = []
    while frame is not None and len(out) < _STACK_DEPTH:
        out.append(frame)
        frame = frame.f_back
    return out


# Where a code object takes from a queue: ("local" | "global", name, attribute or "") for each
# ``X.get(`` / ``X.get_nowait(`` in its bytecode, X a local, a cell, a global, or an attribute
# of one (``self.inbox``). Read once per code object (code objects live as long as their
# functions; the cache is emptied when it reaches CODE_CACHE_MAX).
Taker = tuple[str, str, str]
_TAKERS: dict[CodeType, tuple[Taker, ...]] = {}
CODE_CACHE_MAX = 8192
_GET_NAMES = frozenset({"get", "get_nowait"})
_LOCAL_OPS = frozenset({"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_DEREF", "LOAD_CLOSURE"})
_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_ATTR_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


def takers(code: CodeType) -> tuple[Taker, ...]:
    found = _TAKERS.get(code)
    if found is not None:
        return found
    if not _GET_NAMES.intersection(code.co_names):  # most code: no bytecode to read
        found = ()
        if len(_TAKERS) >= CODE_CACHE_MAX:
            _TAKERS.clear()
        _TAKERS[code] = found
        return found
    out: list[Taker] = []
    prev: list[tuple[str, Any]] = []  # the last two (opname, argval)
    try:
        for ins in dis.get_instructions(code):
            op, arg = ins.opname, ins.argval
            if op in _ATTR_OPS and arg in _GET_NAMES and prev:
                out.extend(_taker(prev))
            if op == "LOAD_FAST_LOAD_FAST" and isinstance(arg, tuple):  # 3.13: two locals
                op, arg = "LOAD_FAST", arg[-1]
            prev = [*prev[-1:], (op, arg)]
    except Exception:
        out = []
    result = tuple(dict.fromkeys(out))
    if len(_TAKERS) >= CODE_CACHE_MAX:
        _TAKERS.clear()
    _TAKERS[code] = result
    return result


def _taker(prev: list[tuple[str, Any]]) -> list[Taker]:
    op, arg = prev[-1]
    if not isinstance(arg, str):
        return []
    if op in _LOCAL_OPS:
        return [("local", arg, "")]
    if op in _GLOBAL_OPS:
        return [("global", arg, "")]
    if op in _ATTR_OPS and len(prev) == 2:  # X.attr.get(
        op0, arg0 = prev[0]
        if isinstance(arg0, str) and op0 in _LOCAL_OPS:
            return [("local", arg0, arg)]
        if isinstance(arg0, str) and op0 in _GLOBAL_OPS:
            return [("global", arg0, arg)]
    return []


def queues_held(frames: Iterable[FrameType], kinds: tuple[type, ...]) -> list[Any]:
    """Queues of type ``kinds`` that these frames take from (see :func:`takers`): the object
    named by a local, a global or an instance attribute (read by :func:`objects.attribute`,
    so no property or ``__getattr__`` of the program runs and no ``__dict__`` is made)."""
    out: list[Any] = []
    for frame in frames:
        found = takers(frame.f_code)
        if not found:
            continue
        local_vars: Any = None
        for where, name, attr in found:
            if where == "local":
                if local_vars is None:
                    local_vars = frame.f_locals
                obj = local_vars.get(name)
            else:
                obj = frame.f_globals.get(name)
            if attr:
                obj = _instance_attr(obj, attr)
            if isinstance(obj, kinds) and not any(obj is q for q in out):
                out.append(obj)
    return out


def _instance_attr(obj: Any, attr: str) -> Any:
    # Not through ``obj.__dict__``: on 3.11/3.12 that makes the dict for good and slows
    # every attribute access of the program on ``obj`` (vmtop/agent/objects.py).
    return attribute(obj, attr)
