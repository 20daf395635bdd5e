"""200 attach/detach cycles leave the target as they found it.

No extra threads, file descriptors, hooks (``Handle._run``, ``asyncio.Queue.get_nowait``,
``queue.Queue.get``, ``gc.callbacks``, the loop's task factory, profile/trace functions) and
no measurable RSS growth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.fault_helpers import FaultTarget, hello, raw_connect
from vmtop import protocol
from vmtop.client import AgentClient

pytestmark = pytest.mark.internals

CYCLES = 200
WARMUP = 30
RSS_GROWTH = 2 * 1024 * 1024

EAGER = hasattr(asyncio, "eager_task_factory")


@pytest.fixture(params=["default", "eager"] if EAGER else ["default"])
def target(request: pytest.FixtureRequest) -> Iterator[FaultTarget]:
    args = ["--tasks", "100"] + (["--eager"] if request.param == "eager" else [])
    with FaultTarget(*args) as t:
        yield t


def cycle(target: FaultTarget) -> None:
    """What `vmtop top --once` does: hello, one snapshot, goodbye."""
    with AgentClient(target.pid) as client:
        client.snapshot(limit=20)


def quick_cycle(target: FaultTarget) -> None:
    """Hello and gone before the loop ran anything the attach scheduled on it."""
    sock = raw_connect(target.socket)
    hello(sock)
    sock.sendall(protocol.encode({"id": 1, "op": "bye", "args": {}}))
    sock.close()


def test_attach_detach_cycles_leave_nothing(target: FaultTarget) -> None:
    for _ in range(WARMUP):  # first attaches import psutil, build caches, grow the heap
        cycle(target)
    before = target.quiet_state()
    for i in range(CYCLES):
        cycle(target)
        if i % 2:
            quick_cycle(target)
    after = target.quiet_state()
    assert after["threads"] == before["threads"]
    assert after["fds"] == before["fds"]
    for hook in ("handle_run_original", "get_nowait_original", "tq_get_original"):
        assert after[hook], hook
    assert after["gc_callbacks"] == before["gc_callbacks"]
    assert after["task_factory"] == before["task_factory"]
    assert not after["profile"] and not after["trace"]
    growth = after["rss"] - before["rss"]
    print(f"RSS {before['rss'] / 1e6:.1f} MB -> {after['rss'] / 1e6:.1f} MB after {CYCLES} cycles")
    assert growth < RSS_GROWTH, growth
    if "--eager" in list(target.proc.args):  # type: ignore[arg-type]
        assert before["task_factory"] == "eager"


@pytest.mark.skipif(not EAGER, reason="eager task factories exist from Python 3.12")
def test_detach_while_the_loop_is_blocked_leaves_no_factory() -> None:
    with FaultTarget("--eager") as target:
        before = target.quiet_state()
        target.send("block 1")
        target.read_until("blocking")
        quick_cycle(target)  # attach and detach while the loop cannot run anything
        target.read_until("blocked")
        after = target.quiet_state()
    assert after["handle_run_original"] and after["get_nowait_original"]
    assert after["task_factory"] == before["task_factory"] == "eager"
