"""A loop kept busy by one task whose steps split their work 4:1 between two functions.

Task "worker": each step calls ``heavy()`` (4 units of work) and ``light()`` (1 unit), the
same pure-Python loop counted in iterations (not in time), then yields with ``sleep(0)``. So
~80 % of the main thread's running time is in ``heavy`` and ~20 % in ``light``, steps last
well under a millisecond and the loop releases the GIL (its ``select(0)``) between any two of
them: the case where a sampler that only gets the GIL at releases sees nothing but ``select``.
Run with ``python -m vmtop run``; prints ``{"ready": PID}`` once the task runs; exits on
``quit`` (or the end of stdin) or after 120 s.
"""

import asyncio
import json
import os
import sys
import threading

UNIT = 400  # iterations of work() per unit: a step of 5 units lasts ~0.1-0.3 ms


def work(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def heavy() -> int:
    return work(4 * UNIT)


def light() -> int:
    return work(UNIT)


async def worker() -> None:
    while True:
        heavy()
        light()
        await asyncio.sleep(0)


async def main() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.startswith("quit"):
                break
        loop.call_soon_threadsafe(stop.set)

    task = asyncio.create_task(worker(), name="worker")
    threading.Thread(target=read_stdin, name="stdin", daemon=True).start()
    await asyncio.sleep(0)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    try:
        await asyncio.wait_for(stop.wait(), 120)
    except TimeoutError:
        pass
    task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
