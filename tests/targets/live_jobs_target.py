"""Target for tests/test_live_jobs.py: run with ``python -m vmtop run live_jobs_target.py``.

Tasks: ``hot`` (CPU: ``crunch_numbers`` in 3 ms steps), ``hoarder`` (keeps 1 KiB blocks,
100 every 0.1 s: ~1 MiB/s, allocated on the line marked HOARD), ``idle-N``; a plain thread ``sleeper``.
Automatic GC is off: collections happen only on the ``gc`` command, so counts are exact.

Commands on stdin (one per line; answered with one JSON line on stdout):
``state`` -> {"state": {...}} (profile hook of the loop thread, tracemalloc, threads, ...)
``ticks N`` -> calls ``tick()`` N times in one loop callback, then {"ticked": N}
``gc`` -> 5 gen-0, 2 gen-1 and 3 gen-2 collections, then {"collected": [5, 2, 3]}
``hook on|off`` -> sets/clears a profile hook on the loop thread, then {"hook": ...}
``quit N`` -> exit N
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import time
import tracemalloc

TICKS = 0
HOARDED = 0
BLOCK = 1024
HOARD_LINE = 0


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def tick() -> None:
    global TICKS
    TICKS += 1


def crunch_numbers(budget: float) -> int:
    deadline = time.perf_counter() + budget
    found = 0
    n = 3
    while time.perf_counter() < deadline:
        for _ in range(50):  # trial division, all in this frame (no generator frames)
            d = 3
            while d * d <= n and n % d:
                d += 2
            if d * d > n:
                found += 1
            n += 2
    return found


async def hot() -> None:
    while True:
        crunch_numbers(0.003)
        await asyncio.sleep(0)


async def hoarder() -> None:
    global HOARDED, HOARD_LINE
    hoard: list[bytes] = []
    HOARD_LINE = sys._getframe().f_lineno + 3  # the line marked HOARD
    while True:
        for _ in range(100):
            hoard.append(bytes(BLOCK))  # HOARD
            HOARDED += 1
        if len(hoard) > 100_000:
            hoard.clear()
        await asyncio.sleep(0.1)


async def idle() -> None:
    while True:
        await asyncio.sleep(0.05)


def sleeper(stop: threading.Event) -> None:
    while not stop.is_set():
        stop.wait(0.05)


def monitoring_tool() -> str | None:
    monitoring = getattr(sys, "monitoring", None)
    return None if monitoring is None else monitoring.get_tool(monitoring.PROFILER_ID)


def state() -> dict:
    return {
        "profile": repr(sys.getprofile()) if sys.getprofile() is not None else None,
        "monitoring": monitoring_tool(),
        "tracing": tracemalloc.is_tracing(),
        "threads": threading.active_count(),
        "thread_names": sorted(t.name for t in threading.enumerate()),
        "switchinterval": sys.getswitchinterval(),
        "ticks": TICKS,
        "hoarded": HOARDED,
        "gc": [s["collections"] for s in gc.get_stats()],
    }


def command(line: str, stop: asyncio.Event) -> None:
    word, _, arg = line.strip().partition(" ")
    if word == "state":
        emit({"state": state()})
    elif word == "ticks":
        for _ in range(int(arg)):
            tick()
        emit({"ticked": int(arg)})
    elif word == "gc":
        for gen, times in ((0, 5), (1, 2), (2, 3)):
            for _ in range(times):
                gc.collect(gen)
        emit({"collected": [5, 2, 3]})
    elif word == "hook":
        monitoring = getattr(sys, "monitoring", None)
        if monitoring is not None:
            if arg == "on":
                monitoring.use_tool_id(monitoring.PROFILER_ID, "test-profiler")
            else:
                monitoring.free_tool_id(monitoring.PROFILER_ID)
        else:
            sys.setprofile((lambda *a: None) if arg == "on" else None)
        emit({"hook": arg})
    elif word == "quit":
        stop.set()


async def main() -> None:
    gc.disable()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(hot(), name="hot"),
        asyncio.create_task(hoarder(), name="hoarder"),
        *(asyncio.create_task(idle(), name=f"idle-{i}") for i in range(3)),
    ]
    thread_stop = threading.Event()
    worker = threading.Thread(target=sleeper, args=(thread_stop,), name="sleeper", daemon=True)
    worker.start()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(command, line, stop)
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read_stdin, name="stdin", daemon=True).start()
    await asyncio.sleep(0.05)  # HOARD_LINE is set once the hoarder ran
    emit({"ready": os.getpid(), "hoard_line": HOARD_LINE, "file": os.path.abspath(__file__)})
    await stop.wait()
    thread_stop.set()
    for task in tasks:
        task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
