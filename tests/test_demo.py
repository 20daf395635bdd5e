"""The bundled demo (``python -m vmtop.demo``): real subprocesses and a real event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from vmtop.demo.__main__ import main
from vmtop.demo.actors import Actor, RestartIntensityExceeded, Supervisor
from vmtop.demo.system import DemoConfig, DemoSystem, idle_names

pytestmark = pytest.mark.internals  # runs under every supported Python in CI

ROOT = Path(__file__).resolve().parent.parent
FIXED_NAMES = {
    "supervisor",
    "producer-1",
    "producer-2",
    "router",
    "worker-1",
    "worker-2",
    "worker-3",
    "slow-consumer",
    "cruncher",
    "hoarder",
    "blocker",
    "publisher",
    "subscriber-1",
    "subscriber-2",
    "subscriber-3",
}
QUEUE_GET = asyncio.Queue.get.__code__


def awaited_queue(task: asyncio.Task[Any]) -> Any:
    """The queue ``task`` is suspended on in ``asyncio.Queue.get``, found as the monitor does."""
    coro: Any = task.get_coro()
    while coro is not None:
        if getattr(coro, "cr_code", None) is QUEUE_GET:
            return coro.cr_frame.f_locals["self"]
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return None


def demo(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "vmtop.demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        **kwargs,
    )


# --------------------------------------------------------------------------- subprocess


def test_runs_for_duration_and_exits_zero() -> None:
    proc = demo("--idle", "50", "--duration", "3")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert err == ""
    # 15 named actors + 50 idle ones, all under the supervisor
    assert "65 actors under 'supervisor'" in out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_running_demo_with_exit_zero(sig: signal.Signals) -> None:
    proc = demo("--idle", "10")
    assert proc.stdout is not None
    banner = proc.stdout.readline()  # printed once the signal handlers are installed
    assert "vmtop demo: pid" in banner
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_agent_flag_never_breaks_the_demo() -> None:
    proc = demo("--agent", "--idle", "1", "--duration", "0.5")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv", [["--idle", "-1"], ["--idle", "many"], ["--duration", "0"], ["--duration", "nan"]]
)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "error:" in err


# --------------------------------------------------------------------------- in process


def test_system_shows_every_actor_the_monitor_needs() -> None:
    async def scenario() -> None:
        config = DemoConfig(idle=50, seed=1, crash_every=0.4, max_restarts=100)
        system = DemoSystem(config)
        system.start()
        await asyncio.sleep(0.6)
        first = system.slow_consumer.mailbox.qsize()

        # Consumers as the monitor finds them: tasks suspended in Queue.get on a queue.
        pubsub_consumers: set[str] = set()
        for _ in range(40):
            for task in asyncio.all_tasks():
                if awaited_queue(task) is system.pubsub:
                    pubsub_consumers.add(task.get_name())
            if len(pubsub_consumers) == 3:
                break
            await asyncio.sleep(0.025)
        await asyncio.sleep(0.4)
        second = system.slow_consumer.mailbox.qsize()

        tasks = {t.get_name(): t for t in asyncio.all_tasks()}
        names = set(tasks)
        idle = sorted(n for n in names if n.startswith("idle-"))
        workers_own_mailboxes = {
            n: awaited_queue(tasks[n]) is system.actors[n].mailbox
            for n in ("worker-1", "worker-2", "idle-000", "idle-049")
        }
        writer = [t for t in threading.enumerate() if t.name == "disk-writer"]
        written = system.disk_writer.written
        restarts = system.supervisor.restarts_by_child.get("worker-3", 0)
        worker3_running = not system.supervisor.tasks["worker-3"].done()
        await system.stop()
        leftover = [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()]

        assert names >= FIXED_NAMES
        assert idle == idle_names(50) == [f"idle-{i:03d}" for i in range(50)]
        assert 0 < first < second  # slow-consumer's mailbox grows
        assert pubsub_consumers == {"subscriber-1", "subscriber-2", "subscriber-3"}
        assert all(workers_own_mailboxes.values()), workers_own_mailboxes
        assert writer and writer[0].daemon and written > 0
        assert restarts >= 1 and worker3_running  # worker-3 failed and was restarted
        assert leftover == []
        assert not writer[0].is_alive()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- supervisor


class Fragile(Actor):
    """Fails on "boom"; records what it handled and signals each (re)start."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: list[str] = []
        self.starts = 0
        self.restarted = asyncio.Event()
        self.got_after = asyncio.Event()

    def started(self) -> None:
        self.starts += 1
        if self.starts > 1:
            self.restarted.set()

    async def receive(self, msg: Any) -> None:
        if msg == "boom":
            raise ValueError("boom")
        self.seen.append(msg)
        if msg == "after":
            self.got_after.set()


def test_supervisor_restarts_crashed_child_keeping_its_mailbox() -> None:
    async def scenario() -> None:
        child = Fragile("fragile")
        sup = Supervisor("sup", [child], max_restarts=3, within=60)
        sup_task = asyncio.create_task(sup.run(), name="sup")
        await asyncio.sleep(0)
        first = sup.tasks["fragile"]
        child.tell("before")
        child.tell("boom")
        child.tell("after")  # queued behind the failing message: survives the restart
        await child.restarted.wait()
        await child.got_after.wait()
        second = sup.tasks["fragile"]
        assert first.done() and isinstance(first.exception(), ValueError)
        assert second is not first and second.get_name() == "fragile" and not second.done()
        assert child.seen == ["before", "after"]
        assert child.restarts == 1 and sup.restarts_by_child == {"fragile": 1}

        child.restarted.clear()
        second.cancel()  # cancelled from outside (a monitor's "cancel task"): restarted too
        await child.restarted.wait()
        assert sup.tasks["fragile"] is not second and child.restarts == 2

        sup_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sup_task
        assert all(t.done() for t in sup.tasks.values())

    asyncio.run(scenario())


def test_supervisor_gives_up_past_restart_intensity() -> None:
    async def scenario() -> None:
        child = Fragile("fragile")
        other = Fragile("bystander")
        sup = Supervisor("sup", [child, other], max_restarts=2, within=60)
        sup_task = asyncio.create_task(sup.run(), name="sup")
        await asyncio.sleep(0)
        for _ in range(3):
            child.tell("boom")
        with pytest.raises(RestartIntensityExceeded, match="more than 2 restarts"):
            await sup_task
        assert child.restarts == 2
        assert all(t.done() for t in sup.tasks.values())  # children stopped with it

    asyncio.run(scenario())


def test_vmtop_demo_waits_for_its_own_agent_past_a_stale_socket_file(tmp_path: Path) -> None:
    # Pids are reused, and a process that was killed leaves its agent's socket file behind: a
    # CI run's demo got such a pid, took the old file for its agent and failed with "does not
    # answer (stale socket)". The demo's start waits until its own agent listens there.
    import socket

    from vmtop.cli.demo_cmd import wait_for_agent
    from vmtop.client import AgentClient
    from vmtop.paths import socket_path

    code = (
        "import sys, time, vmtop.agent; sys.stdin.readline(); vmtop.agent.start(); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    go = threading.Timer(
        0.3, lambda: proc.stdin and proc.stdin.write(b"go\n") and proc.stdin.flush()
    )
    try:
        path = socket_path(proc.pid)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(path))  # a socket file nobody listens on
        stale.close()
        go.start()  # the agent starts only after the wait began
        assert wait_for_agent(proc, tmp_path / "log", timeout=20) == path
        with AgentClient(proc.pid) as client:
            assert client.snapshot(limit=1).node.pid == proc.pid
    finally:
        go.cancel()
        proc.kill()
        proc.wait()
