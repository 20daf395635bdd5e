"""Trio through the agent: task rows, steps from the instrument, memory channels as mailboxes.

The target runs under ``vmtop run`` (the module fixture) or starts the agent itself from
inside ``trio.run`` (``--start``, under plain python)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.agent_helpers import TARGETS, Target, vmtop_cmd
from vmtop.client import AgentClient
from vmtop.records import ProcessRow, Snapshot

pytestmark = pytest.mark.internals  # reads trio's run from a thread's frames


class StartedTarget(Target):
    """The target under plain python (with ``--start`` it calls ``vmtop.agent.start()``
    inside its run; without, it has no agent until one is injected)."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(TARGETS / script), *args],
            env={**os.environ, "PYTHONPATH": str(TARGETS.parent.parent)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.pid = self.proc.pid
        self.pending: list[dict[str, Any]] = []
        self.ready = self.read_until("ready")


@pytest.fixture(scope="module")
def target():
    with Target("trio_target.py") as t:
        yield t


def by_name(snap: Snapshot) -> dict[str, ProcessRow]:
    return {r.name: r for r in snap.rows if r.runtime == "trio"}


def test_scripted_checkpoints_are_exact_steps(target: Target) -> None:
    steps = target.ready["steps"]
    with AgentClient(target.pid) as client:
        before = client.snapshot(filter="scripted", accumulate=True, kinds=("task",)).rows[0]
        target.send("wake")
        target.read_until("scripted_done")
        after = client.snapshot(filter="scripted", accumulate=True, kinds=("task",)).rows[0]
    assert before.runtime == "trio" and before.name == "scripted"
    assert before.reductions_total is not None and after.reductions_total is not None
    # The wake-up, then one step after each checkpoint.
    assert after.reductions_total - before.reductions_total == steps + 1


def test_channel_backlog_is_its_consumers_mailbox(target: Target) -> None:
    with AgentClient(target.pid) as client:
        snap = client.snapshot(sort="mailbox", limit=3, kinds=("task",))
        detail = client.detail(snap.rows[0].key)
    first = snap.rows[0]
    assert first.name == "backlog-consumer" and first.mailbox == target.ready["backlog"]
    assert first.current is not None and first.current.function == "backlog_consumer"
    # Between its 20 ms sleeps it is parked, or queued to run once the sleep ended.
    assert (first.state, first.waiting_on) in {("waiting", "sleep 0.02s"), ("ready", "")}
    assert first.parent == "__main__.main" and first.loop == "trio-MainThread"
    (box,) = detail["mailbox"]
    assert box["length"] == target.ready["backlog"] and box["maxsize"] is None  # inf
    assert detail["await_chain"][0]["function"] == "backlog_consumer"


def test_shared_channel_gets_a_row_and_idle_receiver_an_empty_mailbox(target: Target) -> None:
    with AgentClient(target.pid) as client:
        snap = client.snapshot(limit=100)
        (queue,) = [r for r in snap.rows if r.kind == "queue" and r.runtime == "trio"]
        detail = client.detail(queue.key)
    rows = by_name(snap)
    assert detail["consumers"] == ["worker-0", "worker-1"] and detail["length"] == 0
    assert queue.consumers == 2 and queue.mailbox == 0 and queue.putters == 0
    assert "worker-0" in queue.name and "worker-1" in queue.name
    assert rows["worker-0"].mailbox is None  # shared: not one worker's mailbox
    assert rows["idle-receiver"].mailbox == 0
    assert rows["idle-receiver"].waiting_on == "MemoryReceiveChannel.receive"
    (loop,) = [x for x in snap.node.loops if x.name == "trio-MainThread"]
    assert loop.tasks >= 7  # the program's 7 and trio's own system tasks
    assert "<init>" not in rows  # trio's system tasks are not rows


def test_vmtop_top_shows_trio_rows(target: Target) -> None:
    out = vmtop_cmd("top", str(target.pid), "--once", "-i", "0.2", "-n", "20")
    assert out.returncode == 0, out.stderr
    assert "trio-MainThread" in out.stdout
    for name in ("backlog-consumer", "idle-receiver", "scripted", "hot"):
        assert name in out.stdout


def test_blocking_call_shows_in_the_runs_lag(target: Target) -> None:
    with AgentClient(target.pid) as client:
        first = client.snapshot(limit=1)
        target.send("block 0.3")
        target.read_until("blocked")
        # The probe wakes at most 25 ms after the block ends: wait until it has noted it.
        snap = client.snapshot(limit=1)
        deadline = time.monotonic() + 10
        while _trio_loop(snap).lag_max_total == _trio_loop(first).lag_max_total:
            assert time.monotonic() < deadline, "the lag probe noted nothing"
            time.sleep(0.05)
            snap = client.snapshot(limit=1)
    loop = _trio_loop(snap)
    assert loop.lag_max is not None and loop.lag_max >= 0.25


def _trio_loop(snap: Snapshot) -> Any:
    (loop,) = [x for x in snap.node.loops if x.name == "trio-MainThread"]
    return loop


def hooks(t: Target) -> dict[str, Any]:
    t.send("hooks")
    return t.read_until("hooks")


def test_agent_started_inside_trio_and_hooks_removed_at_detach() -> None:
    with StartedTarget("trio_target.py", "--start") as t:
        assert hooks(t) == {
            "hooks": True,
            "instruments": 0,
            "step_hook": False,
            "receive_hooked": False,
            "probes": 0,
        }
        with AgentClient(t.pid) as client:
            snap = client.snapshot(sort="mailbox", limit=3, kinds=("task",))
            attached = hooks(t)
        assert snap.rows[0].name == "backlog-consumer" and snap.rows[0].mailbox == 500
        assert attached["instruments"] == 1 and attached["step_hook"]
        assert attached["receive_hooked"] and attached["probes"] == 1
        # The agent sees the client leave on its own thread: wait until it has.
        deadline = time.monotonic() + 10
        after = hooks(t)
        while (after["instruments"] or after["probes"]) and time.monotonic() < deadline:
            time.sleep(0.05)
            after = hooks(t)
        assert after == {
            "hooks": True,
            "instruments": 0,
            "step_hook": False,
            "receive_hooked": False,
            "probes": 0,
        }


def test_agent_injected_into_a_running_trio_program() -> None:
    with StartedTarget("trio_target.py") as t:
        out = vmtop_cmd("top", str(t.pid), "--once", "-i", "0.5", "--inject", "-y", "-n", "20")
    assert out.returncode == 0, out.stderr
    assert "trio-MainThread" in out.stdout
    for name in ("backlog-consumer", "idle-receiver", "scripted", "hot"):
        assert name in out.stdout
