"""Injection into processes that did not opt in: real targets, the installed CLI.

Each target is a plain Python program (no vmtop in it) started by the test; vmtop injects the
agent with ``top PID --once --json --inject --method M`` under the target's own Python minor
version (this one, and 3.12 / 3.13 when CI's venvs, ``.ci-venv-3.12`` and ``.ci-venv-3.13``,
hold vmtop). Every kind of target is injected with vmtop's ptrace injector (``--method
ptrace``, whatever the CPU); ``auto``, gdb and lldb each get the targets that tell them apart.
After the injection the target must still answer: it prints its JSON lines as before.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.attach_helpers import JsonLines
from vmtop.attach.checks import AttachError, preflight
from vmtop.attach.ensure import ensure_agent, existing_agent
from vmtop.attach.methods import unavailable
from vmtop.client import AgentClient
from vmtop.paths import socket_path

ROOT = Path(__file__).resolve().parent.parent


def _method(name: str) -> Any:
    why = unavailable(name)
    return pytest.param(name, id=name, marks=pytest.mark.skipif(why is not None, reason=str(why)))


PTRACE = _method("ptrace")
GDB = _method("gdb")
LLDB = _method("lldb")

# -- interpreters ------------------------------------------------------------------------------


def _interpreters() -> list[Any]:
    found = [pytest.param(sys.executable, id=f"{sys.version_info[0]}.{sys.version_info[1]}")]
    for minor in (12, 13):
        path = str(ROOT / f".ci-venv-3.{minor}" / "bin" / "python")
        if minor == sys.version_info[1] or not os.access(path, os.X_OK):
            continue
        probe = subprocess.run(
            [path, "-c", "import vmtop, psutil, sys; print(sys.version_info[1])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == str(minor):
            found.append(pytest.param(path, id=f"3.{minor}"))
    return found


INTERPRETERS = _interpreters()

# -- targets: plain programs that print JSON lines ---------------------------------------------

COMMON = """
import asyncio, gc, json, os, sys, threading, time
ORIGINAL_RUN = asyncio.events.Handle._run
ORIGINAL_QGET = asyncio.Queue.get_nowait

_emit_lock = threading.Lock()

def emit(**kw):  # one write per line: two threads' prints would interleave
    with _emit_lock:
        sys.stdout.write(json.dumps(kw) + "\\n")
        sys.stdout.flush()

def state():
    return dict(
        threads=len(os.listdir("/proc/self/task")),
        py_threads=threading.active_count(),
        names=sorted(t.name for t in threading.enumerate()),
        fds=len(os.listdir("/proc/self/fd")),
        gc_callbacks=len(gc.callbacks),
        handle_run_original=asyncio.events.Handle._run is ORIGINAL_RUN,
        queue_get_original=asyncio.Queue.get_nowait is ORIGINAL_QGET,
        profile=sys.getprofile() is None and sys.gettrace() is None,
    )
"""

TARGETS = {
    # An asyncio loop idle in epoll_wait (no timers at all): it wakes only for stdin.
    "idle_asyncio": """
async def idle_worker(q):
    await q.get()

async def main():
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()
    asyncio.create_task(idle_worker(q), name="idle-worker")
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    emit(ready=True)
    while line := await reader.readline():
        cmd = line.decode().strip()
        if cmd == "state":
            emit(state=state())
        else:
            emit(echo=cmd)

asyncio.run(main())
""",
    # The main thread burns CPU in pure Python and reports progress.
    "busy": """
def spin(n):
    s = 0
    for i in range(n):
        s += i * i
    return s

emit(ready=True)
n = 0
last = time.monotonic()
while True:
    spin(20000)
    if time.monotonic() - last > 0.1:
        n += 1
        last = time.monotonic()
        emit(tick=n)
""",
    # A second thread holds the GIL for about a second at a time inside the regex engine
    # (C code that never releases it); the main thread ticks when it gets the GIL.
    "gil_hog": """
import re

def hog():
    while True:
        t = time.monotonic()
        re.match(r"(a+)+b", "a" * 22)
        emit(hog=round(time.monotonic() - t, 2))
        time.sleep(0.2)

threading.Thread(target=hog, name="gil-hog", daemon=True).start()
emit(ready=True)
n = 0
while True:
    time.sleep(0.1)
    n += 1
    emit(tick=n)
""",
    # The main thread is blocked in time.sleep; each sleep must last its full length.
    "sleeper": """
def nap(seconds):
    t = time.monotonic()
    time.sleep(seconds)
    return time.monotonic() - t

emit(ready=True)
while True:
    emit(slept=round(nap(1.5), 3))
""",
}


class Proc(JsonLines):
    """A target program with a line reader (no sleeps: we wait for the line we need)."""

    def __init__(self, python: str, name: str, tmp: Path) -> None:
        script = tmp / f"{name}.py"
        script.write_text(COMMON + textwrap.dedent(TARGETS[name]))
        super().__init__(
            subprocess.Popen(
                [python, "-u", str(script)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        self.expect("ready")

    def expect(self, key: str, timeout: float = 20.0) -> Any:
        return self.next(key, timeout)[key]

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def status(self, key: str) -> str:
        return self.proc_status().get(key, "").strip()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        socket_path(self.pid).unlink(missing_ok=True)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    procs: list[Proc] = []

    def make(name: str, python: str = sys.executable) -> Proc:
        p = Proc(python, name, tmp_path)
        procs.append(p)
        return p

    yield make
    for p in procs:
        p.stop()


def vmtop(python: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "vmtop", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def inject_and_snapshot(python: str, pid: int, method: str = "ptrace") -> dict[str, Any]:
    proc = vmtop(
        python, "top", str(pid), "--once", "--json", "--inject", "-i", "0.2", "--method", method
    )
    assert proc.returncode == 0, proc.stderr
    assert "agent loaded" in proc.stderr
    return dict(json.loads(proc.stdout))


def rows(snap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in snap["rows"]}


# -- injection into each kind of target, on each Python ----------------------------------------


@pytest.mark.parametrize("method", [PTRACE, GDB, LLDB, "auto"])
@pytest.mark.parametrize("python", INTERPRETERS)
def test_idle_asyncio_loop_in_epoll(start: Any, python: str, method: str) -> None:
    target = start("idle_asyncio", python)
    snap = inject_and_snapshot(python, target.pid, method)
    worker = rows(snap)["idle-worker"]
    assert worker["kind"] == "task"
    assert worker["current"]["function"] == "idle_worker"
    assert snap["node"]["tasks"] >= 2  # main() and idle-worker
    target.send("ping")
    assert target.expect("echo") == "ping"  # the loop still serves its input
    assert target.status("TracerPid") == "0"


@pytest.mark.parametrize("python", INTERPRETERS)
def test_cpu_busy_loop(start: Any, python: str) -> None:
    target = start("busy", python)
    snap = inject_and_snapshot(python, target.pid)
    main = rows(snap)["MainThread"]
    # The busy loop's frames; emit() shows up when the snapshot is taken just as the main
    # thread gives the GIL up to write a tick (that is when the agent's thread gets it).
    assert main["current"]["function"] in ("spin", "emit")
    before = target.expect("tick")
    assert target.expect("tick") > before  # still running its loop
    assert target.status("TracerPid") == "0"


@pytest.mark.parametrize("python", INTERPRETERS)
def test_second_thread_holding_the_gil(start: Any, python: str) -> None:
    target = start("gil_hog", python)
    target.expect("hog")  # the hog has held the GIL at least once
    snap = inject_and_snapshot(python, target.pid)
    assert {"MainThread", "gil-hog"} <= set(rows(snap))
    assert target.expect("hog") >= 0  # the hog still runs its long matches
    target.expect("tick")


@pytest.mark.parametrize("method", [PTRACE, GDB])
@pytest.mark.parametrize("python", INTERPRETERS)
def test_main_thread_blocked_in_sleep(start: Any, python: str, method: str) -> None:
    target = start("sleeper", python)
    snap = inject_and_snapshot(python, target.pid, method)
    assert rows(snap)["MainThread"]["current"]["function"] == "nap"
    # The interrupted sleep resumed for its full length (PEP 475): nothing was cut short.
    for _ in range(2):
        assert target.expect("slept") >= 1.5


# -- reuse and hygiene ----------------------------------------------------------------------


def file_mappings(pid: int) -> set[str]:
    """Paths of the files mapped into ``pid`` (anonymous memory left out: arenas and stacks
    come and go with the program's own threads)."""
    with open(f"/proc/{pid}/maps") as f:
        fields = [line.split(maxsplit=5) for line in f]
    return {f[5].strip() for f in fields if len(f) == 6 and f[5].startswith("/")}


def test_thirty_attach_detach_cycles_leave_nothing_behind(start: Any) -> None:
    target = start("idle_asyncio")
    before = file_mappings(target.pid)
    path = ensure_agent(target.pid, inject=True, yes=True, timeout=15, method="ptrace")

    def settled_state() -> dict[str, Any]:
        # Detach finishes on the agent's client thread just after close(), and a client
        # thread's OS thread ends just after its Python one: wait until only the program's
        # threads and the agent's listener are left.
        deadline = time.monotonic() + 10
        while True:
            target.send("state")
            state: dict[str, Any] = target.expect("state")
            transient = [n for n in state["names"] if n.startswith(("vmtop-client", "Dummy"))]
            settled = not transient and state["threads"] == state["py_threads"]
            if settled or time.monotonic() > deadline:
                return state
            time.sleep(0.05)

    after_inject = settled_state()
    assert after_inject["handle_run_original"] and after_inject["queue_get_original"]
    # The injection itself left one small library (its file already deleted) beside the
    # shared libraries that the agent's imports load (C extension modules and what they
    # link: psutil's libpthread stub); nothing else.
    added = file_mappings(target.pid) - before
    ours = [p for p in added if "/vmtop-agent-" in p]
    assert len(ours) == 1 and ours[0].endswith(".so (deleted)"), added
    assert all(re.search(r"\.so(\.\d+)*$", p) for p in added - set(ours)), added
    for cycle in range(30):
        assert ensure_agent(target.pid, inject=False, yes=False, timeout=5) == path
        with AgentClient(target.pid) as client:
            snap = client.snapshot(limit=10)
            assert "idle-worker" in {r.name for r in snap.rows}, cycle
        if cycle == 0:
            first = settled_state()
            mapped = file_mappings(target.pid)
    last = settled_state()
    assert last == first == after_inject
    assert last["handle_run_original"] and last["queue_get_original"] and last["profile"]
    assert file_mappings(target.pid) == mapped
    target.send("ping")
    assert target.expect("echo") == "ping"


def test_existing_agent_is_reused_without_gdb(start: Any) -> None:
    target = start("idle_asyncio")
    first = ensure_agent(target.pid, inject=True, yes=True, timeout=15)
    began = time.monotonic()
    # inject=False: it must not need to inject again
    assert ensure_agent(target.pid, inject=False) == first == existing_agent(target.pid)
    assert time.monotonic() - began < 5  # answered by the socket, not by a gdb session


# -- refusals: one line, exit 2, nothing touched -----------------------------------------------


def test_non_python_pid_is_refused_and_left_alone() -> None:
    sleeper = subprocess.Popen(["sleep", "100"])
    try:
        proc = vmtop(sys.executable, "top", str(sleeper.pid), "--once", "--inject")
        assert proc.returncode == 2
        assert "is not a CPython process" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_dead_pid_is_refused() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    proc = vmtop(sys.executable, "top", str(gone.pid), "--once", "--inject")
    assert proc.returncode == 2
    assert f"no process with pid {gone.pid}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_thread_id_instead_of_pid_is_refused(start: Any) -> None:
    target = start("gil_hog")
    tids = [int(t) for t in os.listdir(f"/proc/{target.pid}/task") if int(t) != target.pid]
    proc = vmtop(sys.executable, "top", str(tids[0]), "--once", "--inject")
    assert proc.returncode == 2
    assert f"is a thread of process {target.pid}" in proc.stderr
    assert target.status("TracerPid") == "0"
    target.expect("tick")


@pytest.mark.skipif(len(INTERPRETERS) < 2, reason="needs a second Python minor version")
def test_other_python_version_says_what_to_install(start: Any) -> None:
    other = INTERPRETERS[1].values[0]
    target = start("busy", other)
    proc = vmtop(sys.executable, "top", str(target.pid), "--once", "--inject")
    assert proc.returncode == 2
    assert "but this vmtop runs on" in proc.stderr and "-m pip install" in proc.stderr
    assert target.status("TracerPid") == "0"
    target.expect("tick")


def test_no_consent_no_injection(start: Any) -> None:
    target = start("idle_asyncio")
    refused = vmtop(sys.executable, "top", str(target.pid), "--once", "--no-inject")
    assert refused.returncode == 2 and "--no-inject" in refused.stderr
    unasked = vmtop(sys.executable, "top", str(target.pid), "--once")  # stdin is not a tty
    assert unasked.returncode == 2 and "pass --inject" in unasked.stderr
    # No agent (a socket file there could be a killed earlier process's: pids are reused).
    assert existing_agent(target.pid) is None
    target.send("ping")
    assert target.expect("echo") == "ping"


def test_consent_is_asked_through_the_confirm_callable(start: Any) -> None:
    # ensure_agent never reads stdin: the caller's confirm gets the question and decides.
    target = start("idle_asyncio")
    asked: list[str] = []

    def no(question: str) -> bool:
        asked.append(question)
        return False

    with pytest.raises(AttachError, match="nothing was loaded"):
        ensure_agent(target.pid, inject=None, confirm=no, method="ptrace")
    (question,) = asked
    assert f"pid {target.pid} " in question and "no vmtop agent" in question
    assert existing_agent(target.pid) is None
    with pytest.raises(AttachError, match="pass --inject"):  # no confirm, no --inject: refuse
        ensure_agent(target.pid, inject=None)
    with pytest.raises(AttachError, match="nothing was loaded"):  # --inject still asks
        ensure_agent(target.pid, inject=True, confirm=no, method="ptrace")
    assert len(asked) == 2
    path = ensure_agent(target.pid, inject=True, yes=True, confirm=no, method="ptrace")
    assert len(asked) == 2 and path == existing_agent(target.pid)  # --yes: not asked
    target.send("ping")
    assert target.expect("echo") == "ping"


def test_preflight_reports_before_touching_anything() -> None:
    with pytest.raises(AttachError, match="is vmtop itself"):
        preflight(os.getpid())
    with pytest.raises(AttachError, match="invalid pid"):
        preflight(0)


# -- time limits and Ctrl-C ------------------------------------------------------------------


HOLDS_GIL_ON_MAIN = """
import time
print("ready", flush=True)
t = time.monotonic()
sum(range(250_000_000))  # 5-8 s of C code on the main thread: no eval breaker, no signal check
print("done", round(time.monotonic() - t, 1), flush=True)
time.sleep(1.0)  # room for the late bootstrap to run, if it were still valid
print("after", flush=True)
time.sleep(30)
"""


def test_timeout_is_clear_and_voids_the_queued_bootstrap(tmp_path: Path) -> None:
    script = tmp_path / "hold.py"
    script.write_text(HOLDS_GIL_ON_MAIN)
    proc = subprocess.Popen([sys.executable, "-u", str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(AttachError, match="did not run the bootstrap in time"):
            ensure_agent(proc.pid, inject=True, yes=True, timeout=1.5)
        assert proc.stdout.readline().startswith("done")  # it finished its work normally
        assert proc.stdout.readline().strip() == "after"
        assert existing_agent(proc.pid) is None  # the late bootstrap did nothing
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_ctrl_c_during_attach_leaves_the_target_running(start: Any) -> None:
    target = start("busy")
    cli = subprocess.Popen(
        [sys.executable, "-m", "vmtop", "top", str(target.pid), "--once", "--inject"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert cli.stderr is not None
    assert "loading the agent" in cli.stderr.readline()  # gdb is being started now
    cli.send_signal(signal.SIGINT)
    rest = cli.communicate(timeout=30)[1]
    assert cli.returncode in (130, 0), rest  # 0 only if it had already finished
    assert "Traceback" not in rest
    assert target.status("TracerPid") == "0"
    before = target.expect("tick")
    assert target.expect("tick") > before
