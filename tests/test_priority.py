"""profilers.priority: an agent thread gets the GIL back ahead of an event loop whose steps
last ~1.5 ms (the loop releases and retakes the GIL at every select(0), so CPython's take_gil
never asks it to let go: an ordinary wait then lasts seconds, docs/attach.md "Hello latency").

Counted in the loop's own steps, not in time: the main thread makes way at its next
eval-breaker check, so a waiting thread gets the GIL within a step or two of being woken
(more only when the machine is slow to run it). An ordinary wait misses hundreds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import select
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from profilers import priority
from vmtop.client import AgentClient
from vmtop.paths import socket_path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ROOT / "tests" / "targets"

built = pytest.mark.skipif(not priority.available(), reason="_priority was not built")

STEP = 0.0015  # seconds of pure-Python work per loop step


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@contextlib.contextmanager
def stepping_target(tmp_path: Path, *step: str) -> Iterator[tuple[int, Callable[[], int]]]:
    """``stepping_target.py`` under ``vmtop run`` (steps of 1.5 ms, or ``step`` seconds):
    (its pid, a function that reads how many steps it has made so far)."""
    counter = tmp_path / "steps"
    counter.write_bytes(bytes(8))
    target = subprocess.Popen(
        [sys.executable, "-m", "vmtop", "run", "-q", str(TARGETS / "stepping_target.py")]
        + [str(counter), *step],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == "ready"
        yield target.pid, lambda: int(struct.unpack("<Q", counter.read_bytes())[0])
    finally:
        target.kill()
        target.wait()
        socket_path(target.pid).unlink(missing_ok=True)


def test_hello_behind_a_loop_of_short_steps_costs_few_of_its_steps(tmp_path: Path) -> None:
    # The agent's listener and client threads wait through priority.wait_readable and hold
    # urgent sections for the accept and the hello. Counted in the target loop's own steps
    # (1.5 ms each), read before the connect and after the hello's reply: with ordinary
    # waits a hello there took 2.1 s median (0.19-6.5 s), i.e. hundreds to thousands of
    # steps; here a few, more when this machine is slow to run a woken thread.
    lags = []
    with stepping_target(tmp_path) as (pid, steps):
        for _ in range(7):
            before = steps()
            with AgentClient(pid, timeout=60):
                lags.append(steps() - before)
            time.sleep(0.05)
    assert statistics.median(lags) <= 100, lags


@built
def test_snapshots_behind_a_loop_of_very_short_iterations_cost_few_of_its_steps(
    tmp_path: Path,
) -> None:
    # Iterations of 0.2 ms: shorter than even the switch interval the agent asks for while it
    # serves a request (0.5 ms), so every GIL release of the snapshot's own work (reading
    # /proc for the threads' states, psutil, the reply's send) and the wait for the loop's
    # part used to take the GIL back only when the loop happened to lose a race for it:
    # snapshots of 2-9 s, i.e. 10,000+ of these steps. The request is served in an urgent
    # section that the wait for the loop's work pauses (priority.paused, wait_future).
    lags = []
    with (
        stepping_target(tmp_path, "0.0002") as (pid, steps),
        AgentClient(pid, timeout=120) as client,
    ):
        for _ in range(7):
            before = steps()
            snap = client.snapshot(limit=10)
            lags.append(steps() - before)
            assert any(row.kind == "task" for row in snap.rows)  # the loop answered
            time.sleep(0.05)
    assert statistics.median(lags) <= 200, lags


@built
def test_urgent_section_keeps_the_gil_across_blocking_calls() -> None:
    # Inside urgent() a thread releases the GIL for a blocking call (here a short sleep) and
    # comes back without losing it to the 1.5 ms loop: ten such calls finish within a few steps.
    r, w = os.pipe()
    done = threading.Event()
    steps = {"now": 0}
    seen: dict[str, int] = {}

    def worker() -> None:
        assert priority.wait_readable(r, 60.0)
        start = steps["now"]
        with priority.urgent():
            for _ in range(10):
                time.sleep(0.0001)  # an ordinary GIL release and retake
        seen["steps"] = steps["now"] - start
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        time.sleep(0.05)

        async def count_steps() -> None:
            while not done.is_set() and steps["now"] < 20000:
                steps["now"] += 1
                if steps["now"] == 100:
                    os.write(w, b"x")
                spin(STEP)
                await asyncio.sleep(0)

        asyncio.run(count_steps())
    finally:
        os.write(w, b"x")
        thread.join(10)
        os.close(r)
        os.close(w)
    assert seen["steps"] <= 5, seen


@built
def test_wait_times_out_and_stats_count() -> None:
    r, w = os.pipe()
    try:
        before = priority.stats()["priority"]
        assert priority.wait_readable(r, 0.01) is False
        os.write(w, b"x")
        assert priority.wait_readable(r, 0.01) is True
        assert priority.stats()["priority"] == before + 2  # each wait took the GIL back first
    finally:
        os.close(r)
        os.close(w)


@built
def test_sleep_sees_the_main_thread_in_its_python_code_not_at_its_gil_release() -> None:
    # The main thread releases the GIL only at a select(0) between bursts of pure-Python work
    # (most of its time). A thread back from priority.sleep holds the GIL while the main thread
    # is parked at an eval-breaker check, so it finds the main thread inside work() in most of
    # its looks. Before the eval breaker was set for the pending call (3.11/3.12 do not when
    # another thread adds it), the main thread noticed the call only after its next select
    # and was seen there: at the select call, in this function, nearly every time.
    main = threading.get_ident()
    done = threading.Event()
    seen: list[str] = []

    def work() -> int:
        total = 0
        for i in range(3000):
            total += i % 7
        return total

    def looker() -> None:
        for _ in range(100):
            priority.sleep(0.002)
            seen.append(sys._current_frames()[main].f_code.co_name)
        done.set()

    thread = threading.Thread(target=looker)
    thread.start()
    try:
        while not done.is_set():
            work()
            select.select([], [], [], 0)
    finally:
        thread.join(10)
    assert len(seen) == 100
    assert seen.count("work") > 50, collections.Counter(seen)
