"""profilers.priority: an agent thread gets the GIL back ahead of an event loop whose steps
last ~1.5 ms (the loop releases and retakes the GIL at every select(0), so CPython's take_gil
never asks it to let go: an ordinary wait then lasts seconds, docs/attach.md "Hello latency").

Counted in the loop's own steps, not in time: the main thread makes way at its next
eval-breaker check, so the waiting thread must hold the GIL before the step that woke it is
over. An ordinary wait misses hundreds of such steps.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from profilers import priority

pytestmark = pytest.mark.skipif(not priority.available(), reason="_priority was not built")

STEP = 0.0015  # seconds of pure-Python work per loop step


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_waiting_thread_gets_the_gil_within_the_step_that_woke_it() -> None:
    # 40 times: at a step of the loop the main thread writes to a pipe; the waiting thread
    # notes the loop's step count once it holds the GIL again (and reads the byte inside an
    # urgent section, as the agent's recv does). Ordinary waits lost 15-108 steps over 20
    # such rounds here (one round lost 38); these lose a step now and then, when the machine
    # is slow to run the woken thread.
    r, w = os.pipe()
    done = threading.Event()
    steps = {"now": 0}
    woke_at: list[int] = []
    lags: list[int] = []

    def waiter() -> None:
        for _ in range(40):
            assert priority.wait_readable(r, 60.0)
            with priority.urgent():
                os.read(r, 1)
            lags.append(steps["now"] - woke_at[-1])
        done.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    try:
        time.sleep(0.05)  # the waiter is in poll() before the loop starts

        async def loop_steps() -> None:
            while not done.is_set() and steps["now"] < 20000:
                steps["now"] += 1
                if len(woke_at) == len(lags) and steps["now"] % 10 == 0:
                    woke_at.append(steps["now"])
                    os.write(w, b"x")
                spin(STEP)
                await asyncio.sleep(0)

        asyncio.run(loop_steps())
    finally:
        if not done.is_set():
            os.write(w, b"x" * 40)
        thread.join(10)
        os.close(r)
        os.close(w)
    assert len(lags) == 40
    assert sum(lags) <= 40, lags


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
