"""Worst case for the step hook: 1000 tasks handing items along asyncio.Queue rings.

100 rings of 10 stages (one task per stage, 1000 tasks); each ring carries one item. A stage
waits in ``Queue.get``, does a tiny bit of work and ``put_nowait``s the item to the next
stage, so every hand-off is exactly one task step of a few µs: almost all the time is asyncio
machinery, which is what the agent's hooks wrap.

``--bounded``: the issue's back-pressure case instead. Every queue is ``Queue(maxsize=1)`` and
a stage ``await``s its ``put``; each ring carries ``stages // 2`` items, so half the queues are
full and a stage often waits in ``put`` as well as in ``get`` (a hand-off wakes a getter and a
putter: more steps and more future callbacks per item than the unbounded rings).

Usage::

    python benchmarks/workloads/queue_chain.py [--duration 3] [--rings 100] [--stages 10] [--bounded]
    python -m vmtop run -q benchmarks/workloads/queue_chain.py ...

Prints ``{"ready": true, ...}`` once every task waits, then waits for a line ``go`` on stdin
(so a client can attach first), runs for ``--duration`` seconds and prints one JSON line:
``{"items_per_s", "items", "elapsed", "cpu", "items_per_cpu_s", "tasks"}`` (an item = one
hand-off = one task step; ``cpu`` = process CPU seconds in the window, all threads). ``run_chain`` is importable to measure in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any


class Counter:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


async def stage(inbox: asyncio.Queue[int], outbox: asyncio.Queue[int], count: Counter) -> None:
    while True:
        item = await inbox.get()
        count.n += 1
        outbox.put_nowait(item + 1)


async def bounded_stage(
    inbox: asyncio.Queue[int], outbox: asyncio.Queue[int], count: Counter
) -> None:
    while True:
        item = await inbox.get()
        count.n += 1
        await outbox.put(item + 1)


def build(
    rings: int, stages: int, count: Counter, bounded: bool = False
) -> list[asyncio.Task[None]]:
    """Create the rings on the running loop. Unbounded: each ring's first queue holds one
    item. Bounded: ``Queue(maxsize=1)`` everywhere and every other queue holds an item."""
    tasks = []
    body = bounded_stage if bounded else stage
    for r in range(rings):
        queues: list[asyncio.Queue[int]] = [
            asyncio.Queue(maxsize=1 if bounded else 0) for _ in range(stages)
        ]
        for s in range(stages):
            coro = body(queues[s], queues[(s + 1) % stages], count)
            tasks.append(asyncio.create_task(coro, name=f"ring{r}-stage{s}"))
        for s in range(0, stages, 2) if bounded else (0,):
            queues[s].put_nowait(0)
    return tasks


async def run_chain(duration: float, rings: int = 100, stages: int = 10) -> dict[str, Any]:
    """Run the rings for ``duration`` seconds on the running loop; return the figures
    (``cpu`` = this thread's CPU seconds in the window, set-up and tear-down excluded)."""
    count = Counter()
    tasks = build(rings, stages, count)
    await asyncio.sleep(0)
    start_n, t0, c0 = count.n, time.perf_counter(), time.thread_time()
    await asyncio.sleep(duration)
    items, elapsed = count.n - start_n, time.perf_counter() - t0
    cpu = time.thread_time() - c0  # this thread only: the loop's
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"items_per_s": items / elapsed, "items": items, "elapsed": elapsed, "cpu": cpu}


async def wait_for_go() -> None:
    """Wait for a line on stdin without a thread: a reader callback on the loop."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    fd = sys.stdin.fileno()
    buf = bytearray()

    def readable() -> None:
        chunk = os.read(fd, 4096)
        buf.extend(chunk)
        if (not chunk or b"\n" in buf) and not done.done():
            loop.remove_reader(fd)
            done.set_result(None)

    loop.add_reader(fd, readable)
    await done


async def main(args: argparse.Namespace) -> None:
    count = Counter()
    tasks = build(args.rings, args.stages, count, args.bounded)
    await asyncio.sleep(0.1)  # the rings run (and warm up) from here on
    print(json.dumps({"ready": True, "pid": os.getpid(), "tasks": len(tasks)}), flush=True)
    await wait_for_go()
    start_n, t0, c0 = count.n, time.perf_counter(), time.process_time()
    await asyncio.sleep(args.duration)
    items, elapsed = count.n - start_n, time.perf_counter() - t0
    cpu = time.process_time() - c0  # every thread of the process: the agent's included
    result: dict[str, Any] = {"items_per_s": items / elapsed, "items": items, "elapsed": elapsed}
    result.update(cpu=cpu, items_per_cpu_s=items / cpu if cpu > 0 else None, tasks=len(tasks))
    print(json.dumps(result), flush=True)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--rings", type=int, default=100)
    p.add_argument("--stages", type=int, default=10)
    p.add_argument("--bounded", action="store_true", help="Queue(maxsize=1), awaited put")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
