"""Threads as processes (issue 12, item 2): reductions = queue items taken, never hidden behind
idle tasks, vmtop's own frames never a current function."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.agent_helpers import Target, vmtop_cmd
from vmtop.agent.snapshot import SnapshotRequest, _top
from vmtop.agent.threads import VMTOP_DIRS
from vmtop.client import AgentClient
from vmtop.records import ProcessRow, Snapshot

pytestmark = pytest.mark.internals


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    with Target("mailbox_target.py") as t:
        yield t


def thread(snap: Snapshot, name: str) -> ProcessRow:
    (row,) = [r for r in snap.rows if r.kind == "thread" and r.name == name]
    return row


def test_thread_reductions_are_the_items_it_took(target: Target) -> None:
    # Each "take N": N items from a queue.Queue, and the order itself from a SimpleQueue.
    with AgentClient(target.pid) as client:
        first = thread(client.snapshot(kinds=("thread",), filter="taker"), "taker")
        target.send("take 37")
        target.read_until("taken")
        second = thread(client.snapshot(kinds=("thread",), filter="taker"), "taker")
        target.send("take 5")
        target.read_until("taken")
        third = thread(client.snapshot(kinds=("thread",), filter="taker"), "taker")
        total = client.snapshot(kinds=("thread",), filter="taker", accumulate=True)
    assert first.reductions == 0
    # The first order's get() began before the attach, outside the wrapper: not counted.
    assert second.reductions == 37
    assert third.reductions == 5 + 1 and third.reductions_total == 43
    assert thread(total, "taker").reductions_total == 43
    # Found from what it holds (its inbox, and a SimpleQueue of orders it waits on).
    assert second.mailbox is not None and third.mailbox == second.mailbox - 5


def test_executor_worker_reductions_are_its_work_items(target: Target) -> None:
    with AgentClient(target.pid) as client:
        client.snapshot(limit=1)
        target.send("submit 23")
        target.read_until("submitted")
        snap = client.snapshot(kinds=("thread",), filter="exec")
    (row,) = snap.rows  # created at the first submit, after the attach
    assert row.reductions == 23 and row.reductions_total == 23


def test_threads_that_ran_keep_rows_in_the_upper_half() -> None:
    # 40 tasks that stepped, a CPU-hot thread that took no message, an idle thread.
    tasks = [
        ProcessRow(
            key=f"task:{i}",
            kind="task",
            id=str(i),
            name=f"t{i}",
            state="waiting",
            reductions=i,
            time=0.001 * i,
        )
        for i in range(1, 41)
    ]
    hot = ProcessRow(
        key="thread:1", kind="thread", id="1", name="hot", state="running", reductions=0, time=0.9
    )
    idle = ProcessRow(
        key="thread:2", kind="thread", id="2", name="idle", state="sleeping", reductions=0, time=0.0
    )
    rows = [*tasks, hot, idle]
    top30 = _top(rows, SnapshotRequest(sort="reductions", limit=30))
    names = [r.name for r in top30]
    assert len(top30) == 30 and names.index("hot") == 14 and "idle" not in names
    # Otherwise the order is the sort key's: the 29 busiest tasks, busiest first.
    assert [r.reductions for r in top30 if r.kind == "task"] == list(range(40, 11, -1))
    # By TIME the thread's CPU ranks it first; one row asked for is the top one, no reserve.
    assert _top(rows, SnapshotRequest(sort="time", limit=30))[0].name == "hot"
    assert [r.name for r in _top(rows, SnapshotRequest(sort="reductions", limit=1))] == ["t40"]


def test_cpu_hot_thread_is_in_the_default_top_rows(target: Target) -> None:
    target.send("spin")
    try:
        # `vmtop top PID --once`: 30 rows of 210 tasks and 5 threads, sorted by reductions.
        proc = vmtop_cmd("top", str(target.pid), "--once", "--json")
    finally:
        target.send("rest")
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(proc.stdout)
    assert len(snap["rows"]) == 30 and snap["total_rows"] > 200
    rows = {r["name"]: r for r in snap["rows"]}
    assert "spinner" in rows, [r["name"] for r in snap["rows"]]
    spinner = rows["spinner"]
    assert spinner["kind"] == "thread" and spinner["time"] > 0
    # A tie on the sort key goes to the busier row: above every task that did not step.
    order = [r["name"] for r in snap["rows"]]
    idle = [i for i, r in enumerate(snap["rows"]) if r["kind"] == "task" and not r["reductions"]]
    assert idle and order.index("spinner") < min(idle)


def test_no_vmtop_frame_is_a_current_function(target: Target) -> None:
    with AgentClient(target.pid) as client:
        client.snapshot(limit=1)  # attached: queue.Queue.get is wrapped from now on
        target.send("park")
        target.read_until("parking")
        deadline = time.monotonic() + 10
        row = thread(client.snapshot(kinds=("thread",), filter="parker"), "parker")
        while row.waiting_on != "Queue.get" and time.monotonic() < deadline:
            time.sleep(0.05)
            row = thread(client.snapshot(kinds=("thread",), filter="parker"), "parker")
        snap = client.snapshot(limit=300)
        detail = client.detail(row.key)
    # Its stack runs through vmtop's wrapper of Queue.get; the row names the program's code.
    assert row.waiting_on == "Queue.get"
    assert row.current is not None and row.current.function == "parker"
    files = [frame["file"] for frame in detail["stack"]]
    assert any(f.endswith("vmtop/agent/mailbox.py") for f in files), files
    for r in snap.rows:
        assert r.current is None or not r.current.file.startswith(VMTOP_DIRS), r


def test_dequeue_wrappers_leave_with_the_last_client(target: Target) -> None:
    with AgentClient(target.pid) as client:
        client.snapshot(limit=1)
        target.send("state")
        attached = target.read_until("wrapped")["wrapped"]
    deadline = time.monotonic() + 10
    target.send("state")
    after = target.read_until("wrapped")["wrapped"]
    while any(after) and time.monotonic() < deadline:  # the agent's thread detaches
        time.sleep(0.05)
        target.send("state")
        after = target.read_until("wrapped")["wrapped"]
    # asyncio.Queue.get_nowait, queue.Queue.get, SimpleQueue.get and get_nowait
    assert attached == [True, True, True, True]
    assert after == [False, False, False, False]


def test_two_commands_in_one_write_are_both_done(target: Target) -> None:
    # The targets read stdin with tests/targets/stdin_lines.py: with readline in a loop
    # reader, the second of two lines that arrived together waited for good (a CI run on 3.13
    # hung on "park": the loop saw "rest" and "park" in one read, after the agent answered).
    assert target.proc.stdin is not None
    target.proc.stdin.write("submit 1\nsubmit 2\n")
    target.proc.stdin.flush()
    assert target.read_until("submitted")["submitted"] == 1
    assert target.read_until("submitted")["submitted"] == 2
