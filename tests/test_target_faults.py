"""The target exits, is killed, forks or closes its loop while `vmtop top` watches it.

The client reports it in one line and exits non-zero; a forked child serves nothing of its
parent's (no listener, no client connections, no hooks) and can start its own agent.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.fault_helpers import FaultTarget, raw_connect
from vmtop.client import AgentClient, TargetGone

pytestmark = pytest.mark.internals


class Top:
    """``vmtop top PID --count 100 --json -i 0.1`` in the background."""

    def __init__(self, pid: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vmtop", "top", str(pid), "--count", "100", "--json"]
            + ["-i", "0.1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def first_snapshot(self) -> str:
        """Blocks until top printed its first snapshot: it is connected and attached."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("{"), self.finish()
        return line

    def finish(self, timeout: float = 20) -> tuple[int, str]:
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err


@pytest.fixture
def target() -> Iterator[FaultTarget]:
    with FaultTarget("--tasks", "20") as t:
        yield t


def assert_one_line_exit(top: Top, target: FaultTarget) -> None:
    code, err = top.finish()
    assert code != 0
    assert err.splitlines() == [f"vmtop top: error: target pid {target.pid} exited"], err


def test_target_exits(target: FaultTarget) -> None:
    top = Top(target.pid)
    top.first_snapshot()
    target.send("exit 3")
    assert target.proc.wait(20) == 3
    assert_one_line_exit(top, target)


def test_target_is_killed(target: FaultTarget) -> None:
    top = Top(target.pid)
    top.first_snapshot()
    target.proc.kill()
    assert_one_line_exit(top, target)


def test_target_is_killed_mid_request(target: FaultTarget) -> None:
    top = Top(target.pid)
    top.first_snapshot()
    target.send("block 30")
    target.read_until("blocking")
    # Every snapshot now waits ~1 s for the blocked loop before it reports it as blocked:
    # after the next printed snapshot top is (almost always) inside its next request.
    assert top.proc.stdout is not None
    assert '"blocked_for"' in top.proc.stdout.readline()
    target.proc.kill()
    assert_one_line_exit(top, target)


def test_target_exits_mid_request(target: FaultTarget) -> None:
    top = Top(target.pid)
    top.first_snapshot()
    target.send("block 1.5")  # requests in flight wait on the loop, then the target exits
    target.send("exit 4")
    assert target.proc.wait(20) == 4
    assert_one_line_exit(top, target)


def test_target_closes_its_loop(target: FaultTarget) -> None:
    with AgentClient(target.pid) as client:
        assert len(client.snapshot(limit=1).node.loops) == 1
        top = Top(target.pid)
        top.first_snapshot()
        target.send("close_loop 1.5")
        target.read_until("loop_closed")
        # The program lives on without a loop: the agent still answers, with no loops.
        snap = client.snapshot(limit=5)
        assert snap.node.loops == () and all(r.kind != "task" for r in snap.rows)
        assert target.proc.wait(20) == 0
        with pytest.raises(TargetGone, match=f"target pid {target.pid} exited"):
            client.snapshot(limit=1)
    assert_one_line_exit(top, target)


def test_forked_child_inherits_no_listener(target: FaultTarget) -> None:
    parent_socket = target.socket
    top = Top(target.pid)  # a client is attached (hooks installed) when the target forks
    top.first_snapshot()
    target.send("fork 30")
    child_pid = target.read_until("forked")["forked"]
    child = target.read_until("child")["child"]
    try:
        assert "error" not in child, child
        assert child["pid"] == child_pid and child["parent"] == target.pid
        # Under `vmtop run` the child starts an agent of its own at the fork: on its own pid's
        # socket, never the parent's listener.
        assert child["agent_running"] is True
        assert child["socket_path"].endswith(f"/{child_pid}.sock")
        # The parent's socket is still there, still the parent's, and the parent answers it.
        assert child["parent_socket_is_socket"] and child["parent_socket_uid"] == os.getuid()
        # The parent's clients' hooks are not the child's.
        assert child["handle_run_original"] and child["get_nowait_original"]
        assert child["tq_get_original"]
        for _ in range(5):
            with AgentClient(target.pid) as client:
                assert client.snapshot(limit=1).node.pid == target.pid
        # The child can have an agent of its own, on its own pid.
        assert child["own_running"] and child["own_socket"].endswith(f"/{child_pid}.sock")
        with AgentClient(child_pid) as client:
            assert client.snapshot(limit=1).node.pid == child_pid
        # The parent dies while the child lives on: top sees it at once (the child holds no
        # copy of top's connection), and nobody listens on the parent's socket any more.
        target.proc.kill()
        assert_one_line_exit(top, target)
        assert target.proc.wait(10) == -signal.SIGKILL
        with pytest.raises(ConnectionRefusedError):
            raw_connect(parent_socket)
    finally:
        os.kill(child_pid, signal.SIGTERM)  # it stops its agent and exits
    deadline_ok = _wait_gone(child_pid)
    assert deadline_ok
    assert not os.path.exists(child["own_socket"])


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    from vmtop.client import wait_exit

    return wait_exit(pid, timeout)


def test_top_on_a_pid_that_is_gone_is_one_line() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    out = subprocess.run(
        [sys.executable, "-m", "vmtop", "top", str(proc.pid), "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert re.fullmatch(rf"vmtop top: error: no process with pid {proc.pid}\n", out.stderr)
