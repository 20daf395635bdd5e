"""Worst case for a per-step hook: tasks that only count and yield (Trio or asyncio).

``--tasks`` tasks each loop on ``count += 1`` and the runtime's cheapest scheduling point:
``trio.lowlevel.checkpoint()`` or ``asyncio.sleep(0)``. Every item is exactly one task step
of almost nothing, so nearly all the time is the scheduler, which is what the agent's step
counting (Trio's instrument, asyncio's ``Handle._run`` hook) wraps.

Usage::

    python benchmarks/workloads/checkpoints.py --runtime trio [--duration 3] [--tasks 100]
    python -m vmtop run -q benchmarks/workloads/checkpoints.py --runtime asyncio ...

Prints ``{"ready": true, "pid": ...}`` once the tasks run, waits for a line ``go`` on stdin
(so a client can attach first), counts for ``--duration`` seconds and prints one JSON line:
``{"items_per_s", "items", "elapsed", "cpu", "items_per_cpu_s", "tasks"}`` (an item = one
step; ``cpu`` = process CPU seconds in the window, all threads). ``--work N`` adds a loop of
N iterations to each step (a step that does something: N=100 is ~5 µs). ``run_trio`` is importable
to measure in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any


class Counter:
    __slots__ = ("n", "stop")

    def __init__(self) -> None:
        self.n = 0
        self.stop = False


def say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def work(n: int) -> int:
    """``--work``: a loop of ``n`` iterations in each step (0: none, the worst case)."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def window(count: Counter, start: float, cpu0: float, tasks: int) -> dict[str, Any]:
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    return {
        "items_per_s": count.n / elapsed,
        "items": count.n,
        "elapsed": elapsed,
        "cpu": cpu,
        "items_per_cpu_s": count.n / cpu if cpu else 0.0,
        "tasks": tasks,
    }


async def trio_main(duration: float, tasks: int, wait_go: bool, n: int = 0) -> dict[str, Any]:
    import trio

    count = Counter()

    async def spin() -> None:
        checkpoint = trio.lowlevel.checkpoint
        while not count.stop:
            count.n += 1
            if n:
                work(n)
            await checkpoint()

    async with trio.open_nursery() as nursery:
        for i in range(tasks):
            nursery.start_soon(spin, name=f"spin-{i}")
        if wait_go:
            say({"ready": True, "pid": os.getpid()})
            await trio.to_thread.run_sync(sys.stdin.readline)
        count.n = 0
        start, cpu0 = time.perf_counter(), time.process_time()
        await trio.sleep(duration)
        result = window(count, start, cpu0, tasks)
        count.stop = True
    return result


def run_trio(duration: float, tasks: int = 100, instruments: tuple[Any, ...] = ()) -> Any:
    """In-process: the Trio spin for ``duration`` s (with ``instruments`` added)."""
    import trio

    return trio.run(trio_main, duration, tasks, False, instruments=instruments)


async def asyncio_main(duration: float, tasks: int, wait_go: bool, n: int = 0) -> dict[str, Any]:
    import asyncio

    count = Counter()

    async def spin() -> None:
        sleep = asyncio.sleep
        while not count.stop:
            count.n += 1
            if n:
                work(n)
            await sleep(0)

    running = [asyncio.create_task(spin(), name=f"spin-{i}") for i in range(tasks)]
    if wait_go:
        say({"ready": True, "pid": os.getpid()})
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    count.n = 0
    start, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.sleep(duration)
    result = window(count, start, cpu0, tasks)
    count.stop = True
    await asyncio.gather(*running)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", choices=("trio", "asyncio"), required=True)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--work", type=int, default=0, help="loop iterations in each step")
    args = ap.parse_args()
    if args.runtime == "trio":
        import trio

        result = trio.run(trio_main, args.duration, args.tasks, True, args.work)
    else:
        import asyncio

        result = asyncio.run(asyncio_main(args.duration, args.tasks, True, args.work))
    say(result)


if __name__ == "__main__":
    main()
