"""Mailbox truth: consumers that never wait in get() show their backlog (issue 12, item 1).

Each test that checks the first snapshot starts its own target, so the agent has seen nothing
of it before the client attaches.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from tests.agent_helpers import Target, vmtop_cmd
from vmtop.agent import mailbox
from vmtop.agent.step_hooks import HOOK_ENV, c_hook_available
from vmtop.client import AgentClient
from vmtop.records import ProcessRow, Snapshot

pytestmark = pytest.mark.internals

KINDS = ["c", "python"]


def rows_by_name(snap: Snapshot) -> dict[str, ProcessRow]:
    return {r.name: r for r in snap.rows}


@pytest.fixture
def target() -> Iterator[Target]:
    with Target("mailbox_target.py") as t:
        yield t


def test_consumers_are_known_in_the_first_snapshot(target: Target) -> None:
    with AgentClient(target.pid) as client:
        snap = client.snapshot(sort="mailbox", limit=300, kinds=("task", "queue"))
    rows = rows_by_name(snap)
    # Asleep between messages, the queue an argument: found from what its frame holds.
    assert rows["sleepy"].mailbox == 500
    assert rows["sleepy"].waiting_on == "sleep 1s"
    # self.inbox, before any get(): it still waits on the event that comes first.
    assert rows["actor"].mailbox == 300
    assert rows["actor"].waiting_on == "Event.wait"
    # A background worker on a module-level queue (the uvicorn pattern).
    assert rows["global-worker"].mailbox == 200
    # It holds sleepy's queue too, but only puts into it.
    assert rows["producer"].mailbox is None
    # The mailbox sort ranks them first, longest first.
    tasks = [r for r in snap.rows if r.kind == "task"]
    assert [r.name for r in tasks[:3]] == ["sleepy", "actor", "global-worker"]


def test_queue_with_several_consumers_keeps_its_own_row(target: Target) -> None:
    with AgentClient(target.pid) as client:
        snap = client.snapshot(sort="mailbox", limit=300, kinds=("task", "queue"))
    (q,) = [r for r in snap.rows if r.kind == "queue"]
    assert q.mailbox == 50 and q.consumers == 3 and q.putters == 0
    assert all(f"pool-{i}" in q.name for i in range(3))
    rows = rows_by_name(snap)
    assert all(rows[f"pool-{i}"].mailbox is None for i in range(3))


def test_sleeping_consumer_in_the_first_top_interval(target: Target) -> None:
    # What a user runs: one 3 s snapshot sorted by mailbox.
    proc = vmtop_cmd("top", str(target.pid), "--once", "--json", "-i", "3", "--sort", "mailbox")
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(proc.stdout)
    rows = {r["name"]: r for r in snap["rows"]}
    assert rows["sleepy"]["mailbox"] == 500
    tasks = [r for r in snap["rows"] if r["kind"] == "task"]
    assert tasks[0]["name"] == "sleepy"


@pytest.mark.parametrize("kind", KINDS)
def test_a_consumer_is_known_from_its_first_dequeue(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOOK_ENV, kind)
    with Target("mailbox_target.py") as target, AgentClient(target.pid) as client:
        # It takes through a partial: nothing it holds names the queue.
        before = rows_by_name(client.snapshot(filter="hidden", kinds=("task",)))["hidden"]
        target.send("nudge")
        target.read_until("nudged")
        after = rows_by_name(client.snapshot(filter="hidden", kinds=("task",)))["hidden"]
        # A second dequeue in a later interval: still its own, one consumer.
        target.send("nudge")
        target.read_until("nudged")
        again = rows_by_name(client.snapshot(filter="hidden", kinds=("task",)))["hidden"]
    assert before.mailbox is None
    assert after.mailbox == 400
    assert again.mailbox == 400


@pytest.mark.parametrize("kind", KINDS)
def test_marked_call_samples_each_object_once_per_reset(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOOK_ENV, kind)
    seen: list[int] = []

    class Box:
        def __init__(self, n: int) -> None:
            self.items = list(range(n))

        def take(self, n: int = 1) -> list[int]:
            if not self.items:
                raise IndexError("empty")
            out, self.items = self.items[:n], self.items[n:]
            return out

    def sample(box: Any) -> None:
        seen.append(len(box.items))
        raise RuntimeError("a failing sample never reaches the caller")

    original = Box.take
    hook = mailbox.marked_call(original, sample)
    assert (type(hook).__name__ == "MarkedCall") == (kind == "c")
    monkeypatch.setattr(Box, "take", hook)
    a, b = Box(100), Box(50)
    got = [a.take() for _ in range(5)] + [b.take(n=2) for _ in range(3)]
    assert got == [[i] for i in range(5)] + [[0, 1], [2, 3], [4, 5]]
    assert seen == [99, 48]  # the first call on each box
    hook.reset()
    a.take()
    b.take()
    a.take()
    assert seen == [99, 48, 94, 43]
    many = [Box(3) for _ in range(5000)]  # the table of marks grows
    for box in many:
        box.take()
        box.take()
    assert len(seen) == 4 + 5000
    with pytest.raises(IndexError, match="empty"):
        Box(0).take()
    assert Box.take.__wrapped__ is original  # type: ignore[attr-defined]


def test_takers_read_from_bytecode() -> None:
    jobs: asyncio.Queue[int] = asyncio.Queue()

    class Actor:
        def __init__(self) -> None:
            self.inbox: asyncio.Queue[int] = asyncio.Queue()

        async def run(self, out: asyncio.Queue[int]) -> None:
            while True:
                msg = await self.inbox.get()
                await out.put(msg)

    async def worker(q: asyncio.Queue[int]) -> None:
        cache: dict[int, int] = {}
        item = q.get_nowait()
        cache.get(item)
        await jobs.get()

    assert mailbox.takers(Actor.run.__code__) == (("local", "self", "inbox"),)
    assert mailbox.takers(worker.__code__) == (
        ("local", "q", ""),
        ("local", "cache", ""),
        ("local", "jobs", ""),
    )


def test_nothing_of_the_tracker_keeps_a_queue_or_task_alive() -> None:
    tracker = mailbox.MailboxTracker()

    async def main() -> tuple[Any, Any]:
        q: asyncio.Queue[int] = asyncio.Queue()
        q.put_nowait(1)

        async def consumer(q: asyncio.Queue[int]) -> None:
            await q.get()
            await asyncio.sleep(3600)

        task = asyncio.create_task(consumer(q))
        await asyncio.sleep(0)
        tracker.scan_tasks([task])
        assert tracker.mailbox_of(task) == 0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return weakref.ref(q), weakref.ref(task)

    q_ref, task_ref = asyncio.run(main())
    gc.collect()
    assert q_ref() is None and task_ref() is None
    tracker.forget_dead(seconds=1.0)
    tracker.forget_dead(seconds=1.0)
    assert tracker.queues == {} and tracker.by_consumer == {}


def test_backlog_stays_known_across_refreshes(target: Target) -> None:
    # Each refresh resets the dequeue marks: a consumer known once stays known.
    with AgentClient(target.pid) as client:
        for _ in range(3):
            rows = rows_by_name(client.snapshot(sort="mailbox", limit=20, kinds=("task",)))
            assert rows["sleepy"].mailbox == 500
            time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_uvicorn_worker_on_a_module_level_queue_shows_its_backlog(loop: str) -> None:
    pytest.importorskip("uvicorn")
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    with Target("uvicorn_worker_app.py", loop) as target:
        port = int(target.ready["port"])
        # Jobs queued before the attach: the worker is never suspended in get() again.
        queued = post(port, "/jobs/300")["queued"]
        with AgentClient(target.pid) as client:
            snap = client.snapshot(sort="mailbox", limit=10, kinds=("task",))
    assert queued == 300
    assert snap.rows[0].name == "jobs-worker" and snap.rows[0].mailbox == 300


def post(port: int, path: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST")
            with urllib.request.urlopen(req, timeout=10) as r:
                return dict(json.loads(r.read()))
        except urllib.error.URLError:
            assert time.monotonic() < deadline, f"nothing answers on {port}"
            time.sleep(0.05)


@pytest.mark.parametrize("kind", KINDS)
def test_a_queue_that_outlives_its_consumers_keeps_none_of_them(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One long-lived queue, a short task per item (a task per request): each is seen by the
    # dequeue hook (a refresh between them), and the tracker does not grow with them.
    monkeypatch.setenv(HOOK_ENV, kind)
    tracker = mailbox.MailboxTracker()

    known: list[bool] = []

    async def take(q: asyncio.Queue[int]) -> None:
        q.get_nowait()
        q.put_nowait(0)
        # Known from this get, though a task before it may have had the same address.
        known.append(tracker.mailbox_of(asyncio.current_task()) == 1)

    async def main() -> None:
        q: asyncio.Queue[int] = asyncio.Queue()
        q.put_nowait(0)
        tracker.install()
        try:
            for _ in range(200):
                tracker.new_interval()
                await asyncio.create_task(take(q))
        finally:
            tracker.uninstall()
        gc.collect()
        tracker.forget_dead(seconds=1.0)
        # At most the last one (a queue's only consumer stays until the queue goes).
        assert len(tracker.consumer_ids(id(q))) <= 1 and len(tracker.by_consumer) <= 1

    asyncio.run(main())
    assert known == [True] * 200


async def _consumers(n: int) -> tuple[list[asyncio.Queue[int]], list[asyncio.Event], list[Any]]:
    """``n`` tasks, each holding its own queue and taking one item when its event is set
    (found by what they hold: none waits in ``get()``)."""
    queues: list[asyncio.Queue[int]] = [asyncio.Queue() for _ in range(n)]
    events = [asyncio.Event() for _ in range(n)]

    async def consume(q: asyncio.Queue[int], event: asyncio.Event) -> None:
        while True:
            await event.wait()
            event.clear()
            q.get_nowait()

    tasks = [asyncio.create_task(consume(q, e)) for q, e in zip(queues, events, strict=True)]
    await asyncio.sleep(0)
    return queues, events, tasks


async def _cancel(tasks: list[Any]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize("kind", KINDS)
def test_longest_reads_the_queues_dequeued_from_and_the_rest_round_robin(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mailbox sort reads no more queues than its budget allows (none here) plus the ones
    # dequeued from since the last one: a busy consumer's backlog is exact at once, a
    # backlog nobody takes from is found when the round robin reaches it.
    monkeypatch.setenv(HOOK_ENV, kind)
    tracker = mailbox.MailboxTracker()

    async def main() -> None:
        queues, events, tasks = await _consumers(3000)
        tracker.scan_tasks(tasks)
        assert tracker.longest(10, seconds=1.0) == []  # found: read at once, all empty
        tracker.install()
        try:
            tracker.new_interval()
            stuck, busy = queues[100], queues[2900]
            for i in range(7):
                stuck.put_nowait(i)
            for i in range(5):
                busy.put_nowait(i)
            events[2900].set()  # its consumer takes one
            await asyncio.sleep(0)
            assert busy.qsize() == 4
            assert tracker.longest(10, seconds=0.0) == [(4, tasks[2900])]
            assert tracker.longest(10, seconds=1.0) == [(7, tasks[100]), (4, tasks[2900])]
        finally:
            tracker.uninstall()
            await _cancel(tasks)

    asyncio.run(main())


def test_longest_keeps_a_bounded_set_of_leaders() -> None:
    tracker = mailbox.MailboxTracker()

    async def main() -> None:
        queues, _, tasks = await _consumers(600)
        for i, q in enumerate(queues):
            for _ in range(1 + i % 300):
                q.put_nowait(0)
        tracker.scan_tasks(tasks)
        top = tracker.longest(5, seconds=1.0)
        assert [n for n, _ in top] == [300, 300, 299, 299, 298]
        assert {t for _, t in top[:2]} == {tasks[299], tasks[599]}
        assert len(tracker._nonempty) == mailbox.LEADERS_MIN  # not all 600 non-empty ones
        await _cancel(tasks)

    asyncio.run(main())


def test_collected_queues_go_in_bounded_steps() -> None:
    # With no time budget each pass still looks at FORGET_BATCH queues: 3000 collected
    # queues are gone after ceil(3000 / FORGET_BATCH) passes, their consumers too.
    tracker = mailbox.MailboxTracker()

    async def main() -> None:
        queues, events, tasks = await _consumers(3000)
        tracker.scan_tasks(tasks)
        await _cancel(tasks)
        del queues[:], events[:], tasks[:]

    asyncio.run(main())
    gc.collect()
    assert len(tracker.queues) == 3000
    calls = -(-3000 // mailbox.FORGET_BATCH)
    for _ in range(calls - 1):
        tracker.forget_dead(seconds=0.0)
    assert 0 < len(tracker.queues) <= mailbox.FORGET_BATCH
    tracker.forget_dead(seconds=0.0)
    assert (
        tracker.queues == {}
        and tracker.by_consumer == {}
        and tracker._order == [] == tracker._order_refs
    )


@pytest.mark.parametrize("kind", KINDS)
def test_the_tracker_adds_no_gc_tracked_object_per_queue_or_task(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 10, item 5: while the agent discovers a large program, what it remembers per queue,
    # consumer and scanned task must not be objects that every full collection walks (8 per
    # idle consumer before: a QueueInfo, its dict, a set, a tuple, weak references, and the
    # get() frame's locals dict on 3.11/3.12). Counted with gc.get_objects() around the
    # tracker's work while the program stands still. The Python fallback (no C extension)
    # keeps plain weak references: one per queue, consumer and scanned task.
    monkeypatch.setenv(HOOK_ENV, kind)
    tracker = mailbox.MailboxTracker()
    n = 3000

    async def idle(q: asyncio.Queue[int]) -> None:
        while True:
            await q.get()

    async def take_one(q: asyncio.Queue[int], go: asyncio.Event, stop: asyncio.Event) -> None:
        await go.wait()
        q.get_nowait()  # known from this dequeue only
        await stop.wait()

    async def main() -> int:
        waiting = [asyncio.Queue[int]() for _ in range(n)]
        taken = [asyncio.Queue[int]() for _ in range(n)]
        for q in taken:
            q.put_nowait(0)
            q.put_nowait(1)
        go, stop = asyncio.Event(), asyncio.Event()
        tasks = [asyncio.create_task(idle(q)) for q in waiting]
        takers = [asyncio.create_task(take_one(q, go, stop)) for q in taken]
        await asyncio.sleep(0)
        gc.collect()
        before = len(gc.get_objects())  # the program's objects: as many after (a waiter each)
        tracker.install()
        try:
            tracker.new_interval()
            go.set()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            tracker.scan_tasks(tasks)
            tracker.scan_tasks(tasks)  # nothing moved: nothing new
            tracker.longest(10, seconds=1.0)
            tracker.forget_dead(seconds=1.0)
            gc.collect()
            grown = len(gc.get_objects()) - before
            assert len(tracker.queues) == 2 * n
            assert all(tracker.mailbox_of(t) == 0 for t in tasks[::100])
            assert all(tracker.mailbox_of(t) == 1 for t in takers[::100])
        finally:
            tracker.uninstall()
            await _cancel(tasks + takers)
        return grown

    grown = asyncio.run(main())
    if kind == "c":
        assert grown < n // 10, grown
    else:  # plain weak references: to each queue, each consumer, what a scanned task awaits
        assert grown <= 5 * n + n // 10, grown


class _Consumer:
    """A live consumer (``done()`` is False) that the test frees at will."""

    def done(self) -> bool:
        return False


def test_an_id_reused_by_a_new_queue_or_consumer_starts_afresh() -> None:
    # The tracker keeps ids, so a freed queue's or consumer's id, handed to a new object, must
    # not carry the old one's consumers or queues over. CPython's allocator gives a freed
    # block back to the next object of its size: the loops meet reuse at once, and a run
    # where it never happens fails (``reused``) rather than passing unchecked.
    tracker = mailbox.MailboxTracker()
    reused = [0, 0]
    for _ in range(50):
        old_q, old_c = asyncio.Queue[int](), _Consumer()
        with tracker._lock:
            tracker._add(old_q, old_c)
        key = id(old_q)
        del old_q
        q, c = asyncio.Queue[int](), _Consumer()
        q.put_nowait(1)
        if id(q) == key:
            reused[0] += 1
            with tracker._lock:
                tracker._add(q, c)
            assert tracker.consumer_ids(key) == [id(c)] and key not in tracker.multi
            assert tracker.mailbox_of(c) == 1 and tracker.mailbox_of(old_c) is None
            for _ in range(2):  # a whole pass: the key's round-robin reference is the new one
                tracker.forget_dead(seconds=1.0)
            assert tracker._order_refs[tracker._order.index(key)]() is q
            tracker._read_at = 0
            assert tracker.longest(5, seconds=1.0) == [(1, c)]
        del q, c, old_c
    kept = []
    for _ in range(50):
        first = asyncio.Queue[int]()
        first.put_nowait(1)
        gone = _Consumer()
        with tracker._lock:
            tracker._add(first, gone)
        cid = id(gone)
        del gone
        c = _Consumer()
        if id(c) == cid:
            reused[1] += 1
            assert tracker.mailbox_of(c) is None  # the gone consumer's queue is not its
            second = asyncio.Queue[int]()
            with tracker._lock:
                tracker._add(second, c)
            assert [i.queue() for i in tracker.queues_of(c)] == [second]
            assert tracker.consumer_ids(id(first)) == []
            kept.append(second)
        kept.append(first)
        del c
    assert reused[0] > 0 and reused[1] > 0, reused


def test_an_untracked_reference_is_cleared_when_its_object_dies_in_a_cycle() -> None:
    # The tracker's weak references leave the GC (_hooks.untracked_ref); the objects they
    # refer to are often freed by it (a task and the future it waits on are a cycle). Such a
    # reference must be cleared like any other, and others' callbacks still run.
    assert c_hook_available(), "pip install -e . should have compiled the C hooks"
    from vmtop.agent._hooks import untracked_ref

    class Node:
        other: Any = None

    called: list[str] = []
    a, b = Node(), Node()
    a.other, b.other = b, a
    refs = [untracked_ref(a), untracked_ref(b)]
    theirs = weakref.ref(a, lambda _: called.append("callback"))
    assert [gc.is_tracked(r) for r in refs] == [False, False] and refs[0]() is a
    assert weakref.ref(b) is refs[1]  # the shared plain reference (it refers to nothing strongly)
    with pytest.raises(TypeError):
        untracked_ref(1)
    del a, b
    gc.collect()
    assert [r() for r in refs] == [None, None] and theirs() is None
    assert called == ["callback"]
