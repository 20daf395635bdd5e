"""The live agent against a real target process: the values a user would check."""

from __future__ import annotations

import os
import stat
import time

import pytest

from tests.agent_helpers import Target
from vmtop.client import AgentClient, ClientError
from vmtop.records import Snapshot

pytestmark = pytest.mark.internals


@pytest.fixture(scope="module")
def target():
    with Target("agent_target.py") as t:
        # Its busy thread burns 0.4 s of CPU at start-up, competing for the GIL with the hot
        # task; let it finish (it prints its CPU clock) so the agent's threads are not starved.
        t.busy_cpu = t.read_until("busy_thread_cpu")["busy_thread_cpu"]  # type: ignore[attr-defined]
        yield t


def rows_by_name(snap: Snapshot) -> dict[str, object]:
    return {r.name: r for r in snap.rows}


def test_hot_task_is_first_by_reductions_and_time(target: Target) -> None:
    with AgentClient(target.pid) as client:
        time.sleep(0.5)  # the interval the first snapshot covers, as in `vmtop top`
        by_reds = client.snapshot(sort="reductions", limit=5, kinds=("task",))
        by_time = client.snapshot(sort="time", limit=5, kinds=("task",))
    assert by_reds.rows[0].name == "hot"
    assert by_time.rows[0].name == "hot"
    assert by_reds.rows[0].reductions and by_reds.rows[0].reductions > 10
    hot = by_time.rows[0]
    assert hot.current is not None and hot.current.function == "hot"
    assert hot.time is not None and hot.time > 0


def poll(fetch, until, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """Call ``fetch`` until ``until(result)`` holds (the target acts on its own schedule)."""
    deadline = time.monotonic() + timeout
    result = fetch()
    while not until(result) and time.monotonic() < deadline:
        time.sleep(0.05)
        result = fetch()
    return result


def test_busy_consumer_shows_its_backlog_as_mailbox(target: Target) -> None:
    with AgentClient(target.pid) as client:
        # The consumer dequeues every 20 ms; from its first get() after attach it is known.
        snap = poll(
            lambda: client.snapshot(sort="mailbox", limit=3, kinds=("task",)),
            lambda s: s.rows[0].mailbox is not None and s.rows[0].mailbox > 0,
        )
    first = snap.rows[0]
    assert first.name == "backlog-consumer"
    assert first.mailbox == 500


def test_shared_queue_gets_its_own_row(target: Target) -> None:
    with AgentClient(target.pid) as client:
        snap = client.snapshot(limit=100, kinds=("queue", "task"))
    queues = [r for r in snap.rows if r.kind == "queue"]
    assert len(queues) == 1
    q = queues[0]
    assert q.consumers == 3 and q.mailbox == 0 and q.putters == 0
    assert all(f"sub-{i}" in q.name for i in range(3))
    subs = rows_by_name(snap)
    assert subs["sub-0"].mailbox is None  # shared: not any one subscriber's mailbox


def test_scripted_task_step_count_is_exact(target: Target) -> None:
    steps = target.ready["steps"]
    with AgentClient(target.pid) as client:
        before = client.snapshot(filter="scripted", accumulate=True, kinds=("task",)).rows[0]
        target.send("wake")
        target.read_until("scripted_done")
        after = client.snapshot(filter="scripted", accumulate=True, kinds=("task",)).rows[0]
    assert before.reductions_total is not None and after.reductions_total is not None
    assert after.reductions_total - before.reductions_total == steps + 1


def test_blocking_call_shows_in_lag_max(target: Target) -> None:
    with AgentClient(target.pid) as client:
        time.sleep(0.3)  # let the lag probe take a few samples
        target.send("block 0.3")
        target.read_until("blocked")
        time.sleep(0.2)  # the probe runs once the loop is free again
        snap = client.snapshot(limit=1)
    loop = snap.node.loops[0]
    assert loop.lag_max is not None and loop.lag_max >= 0.25
    assert loop.lag_p50 is not None and loop.lag_p50 < 0.25


def test_blocked_loop_is_reported_with_its_stack(target: Target) -> None:
    with AgentClient(target.pid, timeout=10) as client:
        target.send("block 2.5")
        time.sleep(0.3)
        snap = client.snapshot(limit=5)
        target.read_until("blocked")
    loop = snap.node.loops[0]
    assert loop.blocked_for is not None and loop.blocked_for > 0.5
    assert any(loc.function == "main.<locals>.on_line" for loc in loop.blocked_stack)
    assert any("blocked" in n for n in snap.notes)


def test_thread_cpu_matches_the_busy_thread(target: Target) -> None:
    # The thread printed its own CPU clock once it had burnt 0.4 s, then blocked for good. The
    # print and the way into the wait still cost it a little CPU (up to 32 ms seen on a loaded
    # CI machine, where each GIL hand-over waits), so its clock is a floor, not an exact value;
    # any other thread here (the loop's runs a hot task) has burnt far more or far less.
    cpu = target.busy_cpu  # type: ignore[attr-defined]
    with AgentClient(target.pid) as client:
        snap = client.snapshot(limit=20, kinds=("thread",), filter="busy-thread")
    (row,) = snap.rows
    assert row.kind == "thread" and row.reductions == 0  # it took no queue.Queue items
    assert cpu - 0.001 <= row.time_total <= cpu + 0.1
    assert row.state == "sleeping"


def test_detail_shows_await_chain_and_mailbox(target: Target) -> None:
    with AgentClient(target.pid) as client:
        # The consumer is recognised from its dequeues (sampled) once a client is attached.
        row = poll(
            lambda: client.snapshot(filter="backlog-consumer", kinds=("task",)).rows[0],
            lambda r: r.mailbox == 500,
        )
        d = client.detail(row.key)
    assert d["name"] == "backlog-consumer"
    assert d["await_chain"][0]["function"] == "backlog_consumer"
    assert "await" in d["await_chain"][0]["code"]
    (mb,) = d["mailbox"]
    assert mb["length"] == 500 and len(mb["preview"]) == 10
    assert d["memory"] > 0 and "getsizeof" in d["memory_note"]


def test_cancel_cancels(target: Target) -> None:
    with AgentClient(target.pid) as client:
        row = client.snapshot(filter="victim", kinds=("task",)).rows[0]
        result = client.cancel(row.key)
        assert result["cancel_requested"] is True
        target.read_until("victim_cancelled")
        with pytest.raises(ClientError, match="no running task"):
            client.cancel(row.key)


def test_hooks_exist_only_while_attached(target: Target) -> None:
    # An earlier test's client may still be detaching (on the agent's thread), and its
    # thread ending: wait for both.
    before = poll(
        target.state,
        lambda s: (
            s["handle_run_original"]
            and s["get_nowait_original"]
            and not any(n.startswith("vmtop-client") for n in s["thread_names"])
        ),
    )
    assert before["handle_run_original"] and before["get_nowait_original"]
    with AgentClient(target.pid) as client:
        client.snapshot(limit=1)
        during = target.state()
        assert not during["handle_run_original"] and not during["get_nowait_original"]
        assert during["gc_callbacks"] == before["gc_callbacks"] + 1

    # The agent detaches when the client's socket closes, on the agent's own thread.
    def detached(state: dict[str, object]) -> bool:
        return bool(state["handle_run_original"]) and state["threads"] == before["threads"]

    deadline = time.monotonic() + 5
    after = target.state()
    while not detached(after) and time.monotonic() < deadline:
        after = target.state()
    assert (
        after["handle_run_original"] and after["get_nowait_original"] and after["tq_get_original"]
    )
    assert after["gc_callbacks"] == before["gc_callbacks"]
    assert after["threads"] == before["threads"]
    assert after["task_factory"] == before["task_factory"]


def test_socket_modes(target: Target) -> None:
    path = target.socket
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(path.parent).st_mode) == 0o700
    assert os.lstat(path.parent).st_uid == os.getuid()


def test_snapshot_rejects_bad_arguments(target: Target) -> None:
    with AgentClient(target.pid) as client:
        with pytest.raises(ClientError, match="sort must be one of"):
            client.request("snapshot", sort="bogus")
        with pytest.raises(ClientError, match="limit must be"):
            client.request("snapshot", limit=-3)
        with pytest.raises(ClientError, match="unknown op"):
            client.request("eval", code="1")
        assert client.snapshot(limit=1).rows  # the connection still works
