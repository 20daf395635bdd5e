"""Containers and permissions: another mount namespace, a noexec /tmp, no CAP_SYS_PTRACE.

Each target runs under ``unshare -m`` with a private tmpfs on its ``/tmp`` (and, for some,
noexec tmpfs mounts over ``/tmp``, ``/dev/shm`` and ``/var/tmp``): the status directory, the
library and the agent's socket live where the target sees them, reached from here through
``/proc/PID/root``. Needs root (``unshare -m``, ``mount``); the same-namespace cases are in
test_attach.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.exporter_helpers import Exporter
from vmtop import discovery
from vmtop.attach.checks import AttachError
from vmtop.attach.ensure import ensure_agent, existing_agent
from vmtop.attach.methods import unavailable
from vmtop.client import AgentClient, NoAgent
from vmtop.exporter.targets import Targets
from vmtop.fleet.source import FleetSource
from vmtop.paths import socket_path

ROOT = Path(__file__).resolve().parent.parent


def _unshare_works() -> str | None:
    if os.geteuid() != 0:
        return "needs root (unshare -m, mount)"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
        capture_output=True,
        text=True,
    )
    return None if probe.returncode == 0 else f"unshare -m fails here: {probe.stderr.strip()}"


WHY = _unshare_works()
pytestmark = [
    pytest.mark.skipif(WHY is not None, reason=str(WHY)),
    pytest.mark.skipif(unavailable("ptrace") is not None, reason=str(unavailable("ptrace"))),
]

# An asyncio program that prints "ready", then each line it reads back, so the test can see it
# still runs after the injection. It never imports vmtop.
TARGET = """
import asyncio, sys
async def main():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while line := await reader.readline():
        print("echo " + line.decode().strip(), flush=True)
asyncio.run(main())
"""


# A host process with an agent that starts the container and waits for it (a supervisor, or
# `docker run` under a Python parent): the fleet view and the exporter's --subprocesses start
# from it.
PARENT = (
    "import subprocess, sys, vmtop.agent; vmtop.agent.start(); "
    "sys.exit(subprocess.call(sys.argv[1:]))"
)


def only_child(pid: int) -> int:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        (child,) = f.read().split()
    return int(child)


class Contained:
    """A target in its own mount namespace, with tmpfs mounts of its own; with
    ``pid_namespace``, pid 1 in a pid namespace of its own, or ``inner_pid`` there (forked by
    a shell that is pid 1); with ``parent``, started by a host Python process with an agent."""

    def __init__(
        self,
        mounts: list[str],
        pid_namespace: bool = False,
        inner_pid: int | None = None,
        parent: bool = False,
        inner_uid: int | None = None,
        network: bool = False,
    ) -> None:
        run = 'exec "$0" -c "$1"'
        if inner_uid is not None:  # a user namespace where our uid is inner_uid (rootless)
            run = f'exec unshare -U --map-user={inner_uid} --map-group={inner_uid} "$0" -c "$1"'
        if inner_pid is not None:  # the next pid in there is the one asked for
            pid_namespace = True
            run = f'echo {inner_pid - 1} > /proc/sys/kernel/ns_last_pid && "$0" -c "$1"'
        script = " && ".join([*mounts, run])
        pid_flags = ["-p", "-f", "--mount-proc"] if pid_namespace else []
        if network:  # a network namespace of its own (docker's default): other listeners
            pid_flags.append("-n")
        python = os.path.realpath(sys.executable)  # the venv may be hidden
        host = [sys.executable, "-c", PARENT] if parent else []  # a host process: the venv's
        self.proc = subprocess.Popen(
            [*host, "unshare", "-m", *pid_flags, "--propagation", "private", "sh", "-c", script]
            + [python, TARGET],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)} if parent else None,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == "ready", self.proc.stderr.read() if self.proc.stderr else line
        # From the outside in: the parent, unshare (sh execs the target in it), the process
        # unshare forked into the pid namespace, the one that shell forked.
        self.chain = [self.proc.pid]
        for step in (parent, pid_namespace, inner_pid is not None):
            if step:
                self.chain.append(only_child(self.chain[-1]))
        self.pid = self.chain[-1]
        self.parent = self.proc.pid if parent else None

    def echo(self, text: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def libraries(self) -> list[str]:
        """Paths of vmtop's injected libraries mapped into the target."""
        with open(f"/proc/{self.pid}/maps") as f:
            return sorted({line.split()[5] for line in f if "vmtop-agent-" in line})

    def stop(self) -> None:
        for pid in reversed(self.chain[1:]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()
        if self.parent is not None:  # killed: its agent could not remove its socket
            socket_path(self.parent).unlink(missing_ok=True)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def tmpfs(path: str, *options: str) -> str:
    flags = f"-o {','.join(options)} " if options else ""
    return f"mount -t tmpfs {flags}tmpfs {path}"


@pytest.fixture
def contained() -> Iterator[list[Contained]]:
    made: list[Contained] = []
    yield made
    for target in made:
        target.stop()


def start(
    contained: list[Contained],
    *mounts: str,
    pid_namespace: bool = False,
    inner_pid: int | None = None,
    parent: bool = False,
    inner_uid: int | None = None,
    network: bool = False,
) -> Contained:
    target = Contained(list(mounts), pid_namespace, inner_pid, parent, inner_uid, network)
    contained.append(target)
    return target


def test_private_tmp_inject_then_find_the_agent_again(contained: list[Contained]) -> None:
    target = start(contained, tmpfs("/tmp"))
    path = ensure_agent(target.pid, inject=True, yes=True, timeout=15, method="ptrace")
    # The agent made its socket in its own /tmp, which only /proc/PID/root shows us.
    assert str(path) == f"/proc/{target.pid}/root/tmp/vmtop-0/{target.pid}.sock"
    # Nothing listens at that pid's path in our /tmp (a file there could be a killed earlier
    # process's: pids are reused).
    assert not discovery._answers(Path(f"/tmp/vmtop-0/{target.pid}.sock"))
    # The library came from the attach's status directory in the target's /tmp.
    (library,) = target.libraries()
    assert library.startswith("/tmp/vmtop-attach-") and not Path(library).parent.exists()
    leftovers = [n for n in os.listdir(f"/proc/{target.pid}/root/tmp") if "attach" in n]
    assert leftovers == []  # the status directory is gone
    with AgentClient(target.pid) as client:
        assert client.snapshot(limit=5).node.pid == target.pid
    assert existing_agent(target.pid) == path  # found again without injecting
    assert target.echo("still there") == "echo still there"


def test_own_pid_namespace_agent_found_under_its_inner_pid(contained: list[Contained]) -> None:
    target = start(contained, tmpfs("/tmp"), pid_namespace=True)
    path = ensure_agent(target.pid, inject=True, yes=True, timeout=15, method="ptrace")
    assert str(path) == f"/proc/{target.pid}/root/tmp/vmtop-0/1.sock"  # pid 1 in there
    with AgentClient(target.pid) as client:
        assert client.snapshot(limit=5).node.pid == 1  # the agent reports its own view
    assert target.echo("inner") == "echo inner"


def test_user_namespace_agent_found_under_its_inner_uid(contained: list[Contained]) -> None:
    # A rootless container: our uid (0) is 1000 in there, so its agent makes /tmp/vmtop-1000.
    target = start(contained, tmpfs("/tmp"), inner_uid=1000)
    path = ensure_agent(target.pid, inject=True, yes=True, timeout=15, method="ptrace")
    assert str(path) == f"/proc/{target.pid}/root/tmp/vmtop-1000/{target.pid}.sock"
    assert discovery.agent_state(target.pid) == "listening"
    with AgentClient(target.pid) as client:
        assert client.snapshot(limit=5).node.pid == target.pid
    assert target.echo("mapped") == "echo mapped"


def test_cli_top_injects_into_a_private_tmp_target(contained: list[Contained]) -> None:
    target = start(contained, tmpfs("/tmp"))
    cmd = [sys.executable, "-m", "vmtop", "top", str(target.pid), "--once", "--json"]
    first = subprocess.run(
        [*cmd, "--inject", "--yes", "--method", "ptrace"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["node"]["pid"] == target.pid
    again = subprocess.run(
        [*cmd, "--no-inject"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert again.returncode == 0, again.stderr
    assert target.echo("after") == "echo after"


def test_noexec_tmp_maps_the_library_from_dev_shm(contained: list[Contained]) -> None:
    target = start(contained, tmpfs("/tmp", "noexec"))
    ensure_agent(target.pid, inject=True, yes=True, timeout=15, method="ptrace")
    (library,) = target.libraries()
    assert library.startswith("/dev/shm/vmtop-agent-"), library
    assert target.echo("x") == "echo x"


def test_noexec_everywhere_is_one_line_and_changes_nothing(contained: list[Contained]) -> None:
    target = start(
        contained,
        tmpfs("/tmp", "noexec"),
        tmpfs("/dev/shm", "noexec"),
        tmpfs("/var/tmp", "noexec"),
    )
    with pytest.raises(AttachError) as info:
        ensure_agent(target.pid, inject=True, yes=True, timeout=15, method="ptrace")
    message = str(info.value)
    assert "\n" not in message
    assert "no directory where the target can map a library" in message
    assert "/tmp" in message and "/dev/shm" in message and "/var/tmp" in message
    assert target.libraries() == [] and existing_agent(target.pid) is None
    assert target.echo("unharmed") == "echo unharmed"


def test_a_namespace_without_this_vmtop_is_refused_before_anything(
    contained: list[Contained],
) -> None:
    # The target sees an empty directory where this vmtop lives (a container without it).
    target = start(contained, tmpfs("/tmp"), tmpfs(str(ROOT)))
    with pytest.raises(AttachError) as info:
        ensure_agent(target.pid, inject=True, yes=True, timeout=15, method="ptrace")
    message = str(info.value)
    assert "another mount namespace" in message and str(ROOT) in message
    assert "\n" not in message
    assert target.libraries() == []
    assert os.listdir(f"/proc/{target.pid}/root/tmp") == []  # not even a status directory
    assert target.echo("unharmed") == "echo unharmed"


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv is not installed")
def test_root_without_cap_sys_ptrace_is_told_before_anything() -> None:
    # A target whose gid differs from ours may be traced only with CAP_SYS_PTRACE (a root
    # vmtop in a container without --cap-add SYS_PTRACE): one line, exit 2, target untouched.
    python = os.path.realpath(sys.executable)
    target = subprocess.Popen(
        ["setpriv", "--regid=65534", "--clear-groups", python, "-c", TARGET],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert target.stdout is not None and target.stdin is not None
        assert target.stdout.readline().strip() == "ready"
        without = ["setpriv", "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace"]
        cmd = [sys.executable, "-m", "vmtop", "top", str(target.pid), "--once", "--json"]
        refused = subprocess.run(
            [*without, *cmd, "--inject", "--yes"], capture_output=True, text=True, cwd=ROOT
        )
        assert refused.returncode == 2
        (line,) = refused.stderr.strip().splitlines()
        assert "needs CAP_SYS_PTRACE" in line and "gid 65534" in line
        assert existing_agent(target.pid) is None
        allowed = subprocess.run(  # with the capability, root may
            [*cmd, "--inject", "--yes", "--method", "ptrace"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert allowed.returncode == 0, allowed.stderr
        target.stdin.write("ok\n")
        target.stdin.flush()
        assert target.stdout.readline().strip() == "echo ok"
    finally:
        target.kill()
        target.wait()


# -- seeing them: vmtop ps, the fleet view, the exporter (one discovery: vmtop.discovery) ------


def ps_json() -> dict[int, dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-m", "vmtop", "ps", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    pids = [row["pid"] for row in rows]
    assert len(pids) == len(set(pids))  # each process once
    return {row["pid"]: row for row in rows}


def test_ps_fleet_and_exporter_see_agents_in_containers(contained: list[Contained]) -> None:
    private = start(contained, tmpfs("/tmp"), parent=True)
    own_pids = start(contained, tmpfs("/tmp"), pid_namespace=True, parent=True)
    for target in (private, own_pids):
        ensure_agent(target.pid, inject=True, yes=True, timeout=15, method="ptrace")
    assert private.parent is not None and own_pids.parent is not None

    # vmtop ps: each under its host pid, its agent listening where it made it.
    procs = ps_json()
    for target, inner in ((private, private.pid), (own_pids, 1)):
        row = procs[target.pid]
        assert row["agent"] == "listening", row
        assert row["socket"] == f"/proc/{target.pid}/root/tmp/vmtop-0/{inner}.sock"
    for parent in (private.parent, own_pids.parent):
        assert procs[parent]["agent"] == "listening"
    assert procs[own_pids.pid]["ppid"] == own_pids.chain[1]  # unshare, host numbering

    # The discovery behind exporter --all: both, under host pids, once.
    agents = discovery.discover()
    assert {private.pid, own_pids.pid, private.parent, own_pids.parent} <= set(agents)
    assert agents[own_pids.pid].location.theirs == Path("/tmp/vmtop-0/1.sock")
    assert 1 not in agents or agents[1].location.path != agents[own_pids.pid].location.path

    # The fleet view from the host parent: the container's process joins under its host pid
    # (its agent calls itself pid 1).
    source = FleetSource(own_pids.parent).connect()
    try:
        snap = source.snapshot(limit=20)
        assert {s.node.pid for s in source.fleet.snapshot().processes} == {
            own_pids.parent,
            own_pids.pid,
        }
    finally:
        source.close()
    assert any(loop.name.startswith(f"{own_pids.pid} ") for loop in snap.node.loops)
    assert not any(loop.name.startswith("1 ") for loop in snap.node.loops)
    fleet = subprocess.run(
        [sys.executable, "-m", "vmtop", "top", str(private.parent), "--subprocesses"]
        + ["--once", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert fleet.returncode == 0, fleet.stderr
    assert {p["pid"] for p in json.loads(fleet.stdout)["processes"]} == {
        private.parent,
        private.pid,
    }

    # The exporter over the parent and its workers: the container's agent scraped over HTTP,
    # under its host pid.
    exporter = Exporter(str(own_pids.parent), "--subprocesses")
    try:
        metrics = exporter.scrape()
    finally:
        exporter.stop()
    scraped = re.findall(r'^vmtop_target_info\{[^}]*\bpid="(\d+)"', metrics, re.MULTILINE)
    assert sorted(scraped) == sorted([str(own_pids.parent), str(own_pids.pid)])
    for target in (private, own_pids):
        assert target.echo("seen") == "echo seen"


@pytest.mark.parametrize("network", [False, True], ids=["host-network", "own-network"])
def test_a_container_pid_that_is_also_a_host_pid_is_counted_once(
    contained: list[Contained], network: bool
) -> None:
    # A Python process on the host without an agent, and a container process whose pid in
    # its own pid namespace is the same number, sharing the host's /tmp: the container's agent
    # listens on /tmp/vmtop-0/N.sock, the very path where the host's pid N would put its own.
    host = subprocess.Popen(
        [os.path.realpath(sys.executable), "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
    )
    try:
        target = start(contained, inner_pid=host.pid, network=network)
        ensure_agent(target.pid, inject=True, yes=True, timeout=15, method="ptrace")
        shared = Path(f"/tmp/vmtop-0/{host.pid}.sock")
        assert shared.exists()  # the container's socket, in the host's /tmp

        agents = discovery.discover([host.pid, target.pid])
        assert agents[target.pid].state == "listening"
        # A socket at its path, but not its own; from another network namespace, one that
        # nothing in the host's listens on.
        host_state = "stale" if network else "-"
        assert agents[host.pid].state == host_state
        assert target.pid in discovery.listening() and host.pid not in discovery.listening()
        procs = ps_json()
        assert procs[target.pid]["agent"] == "listening"
        assert procs[host.pid]["agent"] == host_state
        assert Targets([], all_agents=True, report=lambda _: None).wanted().count(target.pid) == 1
        assert host.pid not in Targets([], all_agents=True, report=lambda _: None).wanted()
        # Nor does a client of host pid N talk to the container's agent.
        assert existing_agent(host.pid) is None
        top = subprocess.run(
            [sys.executable, "-m", "vmtop", "top", str(host.pid), "--once", "--no-inject"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert top.returncode != 0
        (line,) = top.stderr.strip().splitlines()
        assert f"no vmtop agent in pid {host.pid}" in line
        refused = "stale socket" if network else "is another process's agent socket"
        with pytest.raises(NoAgent, match=refused):
            AgentClient(host.pid).connect()
        assert target.echo("one") == "echo one"
    finally:
        host.kill()
        host.wait()
        Path(f"/tmp/vmtop-0/{host.pid}.sock").unlink(missing_ok=True)  # the target is killed
