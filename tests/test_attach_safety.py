"""The ptrace injector against programs that check themselves: nothing changes, nothing hangs.

Each target (tests/targets/inject_checker.py) recomputes floats in the interpreter's own loops
and compares them with its first results, and beats every 0.1 s; it is injected several times
with ``method="ptrace"`` (the agent's bootstrap, the real thing) and must keep beating with no
wrong result, no shortened sleep, its ``threading.main_thread()`` right, and never be left
stopped or traced. A C program that holds known values in all vector registers checks the
register restore directly. The 100-injection soak over 3.11-3.13 is
``benchmarks/soak_attach.py`` (figures in docs/attach.md); this is its representative sample,
run under every supported Python by CI (``internals``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.attach_helpers import (
    KINDS,
    TARGETS,
    Checker,
    JsonLines,
    inject_agent_ptrace,
    inject_marker,
)
from vmtop.attach import AttachError, ensure_agent, payload, ptrace_inject, threads
from vmtop.attach.ensure import existing_agent
from vmtop.attach.maps import read_maps
from vmtop.paths import socket_path

pytestmark = [
    pytest.mark.internals,
    pytest.mark.skipif(
        ptrace_inject.unavailable() is not None, reason=str(ptrace_inject.unavailable())
    ),
]

INJECTIONS = 3


@pytest.fixture
def checker() -> Iterator[Any]:
    started: list[Checker] = []

    def start(kind: str) -> Checker:
        c = Checker(kind)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_injections_change_no_result_and_stop_no_heartbeat(
    checker: Any, kind: str, tmp_path: Path
) -> None:
    target = checker(kind)
    first = target.beats(1)
    if kind == "busy":
        assert first["threading"] is None  # the payload must queue it on the main thread
    assert inject_agent_ptrace(target) == socket_path(target.pid)
    assert target.running_and_untraced()
    for n in range(1, INJECTIONS):
        inject_marker(target, n, tmp_path)
        assert target.running_and_untraced()
    after = target.beats(3)
    assert after["bad"] == 0, after  # no float or vector result changed
    assert after["short_sleeps"] == 0, after  # no sleep cut short
    assert after["threading"] is True, after  # threading.main_thread() is the main thread
    assert after["beat"] > first["beat"]
    assert target.running_and_untraced()


PARKS_AND_SPINS = """
import json, os, select, threading, time
r, w = os.pipe()
threading.Thread(target=time.sleep, args=(300,), name="sleeper", daemon=True).start()
threading.Thread(target=os.read, args=(r, 1), name="reader", daemon=True).start()
def spin():
    while True:
        pass
threading.Thread(target=spin, name="spinner", daemon=True).start()
print(json.dumps({"ready": True, "native_ids": {t.name: t.native_id for t in threading.enumerate()}}), flush=True)
select.select([], [], [], 300)
"""


def test_candidate_threads_parked_first_then_main_then_running(tmp_path: Path) -> None:
    script = tmp_path / "parks.py"
    script.write_text(PARKS_AND_SPINS)
    target = JsonLines(
        subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    )
    try:
        ids = target.next("ready")["native_ids"]
        pid = target.pid
        # Wait until each thread is where it parks (the kernel says so; no fixed sleep):
        # clock_nanosleep, read of a pipe, select (glibc makes it pselect6).
        wanted = {ids["sleeper"]: {230}, ids["reader"]: {0}, pid: {23, 270}}
        deadline = time.monotonic() + 20
        while True:
            found = {tid: nr for tid, nr, _ in threads.candidates(pid)}
            if all(found.get(t) in nrs for t, nrs in wanted.items()) or time.monotonic() > deadline:
                break
            time.sleep(0.01)  # polling /proc: the kernel has no event for "now parked"
        order = [tid for tid, _, _ in threads.candidates(pid)]
        assert all(found.get(t) in nrs for t, nrs in wanted.items()), found
        # Parked threads other than the main one, then the main one, then the running ones.
        assert order.index(pid) > max(order.index(ids["sleeper"]), order.index(ids["reader"]))
        assert found[ids["spinner"]] == -1 and order.index(ids["spinner"]) > order.index(pid)
    finally:
        target.proc.kill()
        target.proc.wait()


def test_vector_registers_of_a_borrowed_thread_are_restored(checker: Any, tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path / "xmm_spin"
    subprocess.run([cc, "-O1", "-o", str(exe), str(TARGETS / "xmm_spin.c")], check=True)
    spin = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True)
    try:
        assert spin.stdout is not None and spin.stdout.readline().strip() == "ready"
        # Its own code is where a running thread may be borrowed: always inside the checks.
        ranges = [
            (m.start, m.end) for m in read_maps(spin.pid) if "x" in m.perms and m.path == str(exe)
        ]
        source = payload.built("_payload")
        assert source is not None
        for n in range(10):
            library = tmp_path / f"payload-{n}.so"  # the installed file: its constructor is idle
            shutil.copy(source, library)
            done = ptrace_inject.load_library(
                spin.pid, str(library), ranges, 10.0, tmp_path / "abort"
            )
            assert done["tid"] == spin.pid and done["handle"]
        for _ in range(2):
            line = spin.stdout.readline().split()  # "beat N bad M": one round after the last
        assert line[0] == "beat" and line[3] == "0", line
    finally:
        spin.kill()
        spin.wait()


SLEEPS_WITH_A_HANDLER = """
import json, signal, sys, time
signal.signal(signal.SIGUSR1, lambda *a: print(json.dumps({"handled": True}), flush=True))
print(json.dumps({"ready": True}), flush=True)
time.sleep(300)
"""


def test_a_signal_during_the_borrowed_call_is_not_hidden(tmp_path: Path) -> None:
    # The sleep the injector interrupted must end with EINTR when a handled signal arrived
    # meanwhile (its handler then runs at once), not restart and hide it for 300 s.
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    library = tmp_path / "raise_sigusr1.so"
    source = str(TARGETS / "raise_sigusr1.c")
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(library), source], check=True)
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPS_WITH_A_HANDLER)
    target = JsonLines(
        subprocess.Popen([sys.executable, "-u", str(script)], stdout=subprocess.PIPE, text=True)
    )
    try:
        target.next("ready")
        exe = os.readlink(f"/proc/{target.pid}/exe")
        code = [(m.start, m.end) for m in read_maps(target.pid) if "x" in m.perms and m.path == exe]
        done = ptrace_inject.load_library(target.pid, str(library), code, 10.0, tmp_path / "abort")
        assert done["tid"] == target.pid  # the main thread, parked in its sleep
        target.next("handled")
        assert target.proc.poll() is None
    finally:
        target.proc.kill()
        target.proc.wait()


NATIVE_ONLY = """
import hashlib, json, sys, time
t = time.perf_counter()
hashlib.pbkdf2_hmac("sha256", b"x", b"salt", 100_000)
rounds = int(100_000 * 4.0 / (time.perf_counter() - t))  # about 4 s on this machine
print(json.dumps({"ready": True}), flush=True)
# One call in OpenSSL's code: no thread is ever at a safe point meanwhile.
hashlib.pbkdf2_hmac("sha256", b"x", b"salt", rounds)
print(json.dumps({"done": True}), flush=True)
sys.stdin.read()  # alive until the test ends
"""


@pytest.fixture
def native_only(tmp_path: Path) -> Iterator[JsonLines]:
    """A program whose only thread runs OpenSSL's code for about 4 s."""
    script = tmp_path / "native.py"
    script.write_text(NATIVE_ONLY)
    proc = subprocess.Popen(
        [sys.executable, "-S", str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    target = JsonLines(proc)
    try:
        target.next("ready")
        yield target
    finally:
        proc.kill()
        proc.wait()


def test_no_safe_thread_is_one_line_and_leaves_the_target_alone(native_only: JsonLines) -> None:
    pid = native_only.pid
    with pytest.raises(AttachError) as failed:
        ensure_agent(pid, inject=True, yes=True, timeout=1.0, method="ptrace")
    message = str(failed.value)
    assert message.startswith("injection failed: ptrace: no thread of pid"), message
    assert "nothing was changed" in message and "\n" not in message
    assert existing_agent(pid) is None
    assert native_only.proc_status()["TracerPid"] == "0"
    native_only.next("done")  # it finished its work


def test_ctrl_c_while_the_injector_looks_for_a_thread(native_only: JsonLines) -> None:
    cli = subprocess.Popen(
        [sys.executable, "-m", "vmtop", "top", str(native_only.pid), "--once", "--inject"]
        + ["--method", "ptrace"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert cli.stderr is not None
    assert "loading the agent" in cli.stderr.readline()  # the injector is starting
    cli.send_signal(signal.SIGINT)
    rest = cli.communicate(timeout=60)[1]
    assert cli.returncode == 130, rest
    assert "Traceback" not in rest
    status = native_only.proc_status()
    assert status["TracerPid"] == "0" and status["State"][0] in "RSD", status
    native_only.next("done")
    assert existing_agent(native_only.pid) is None


def test_every_method_that_failed_is_named_in_one_line(tmp_path: Path) -> None:
    target = subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == "ready"
        env = dict(os.environ, PATH=str(tmp_path))  # neither gdb nor lldb can be found
        proc = subprocess.run(
            [sys.executable, "-m", "vmtop", "top", str(target.pid), "--once", "--inject"]
            + ["--method", "gdb"],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        assert proc.returncode == 2
        assert (
            proc.stderr.strip()
            .splitlines()[-1]
            .endswith("injection failed: gdb: gdb is not installed")
        ), proc.stderr
        assert "Traceback" not in proc.stderr
        assert target.poll() is None
    finally:
        target.kill()
        target.wait()
