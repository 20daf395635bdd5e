"""N idle actor-like tasks (each blocked on its own asyncio.Queue) plus 10 busy ones.

Usage: python -m vmtop run benchmarks/workloads/many_tasks.py N
Prints {"ready": true, "tasks": N} once every task is suspended.
"""

import asyncio
import json
import sys


async def idle(q: asyncio.Queue) -> None:
    while True:
        await q.get()


async def busy(q: asyncio.Queue) -> None:
    while True:
        q.put_nowait(1)
        await q.get()
        await asyncio.sleep(0.001)


async def main(n: int) -> None:
    tasks = [asyncio.create_task(idle(asyncio.Queue()), name=f"idle-{i}") for i in range(n)]
    tasks += [asyncio.create_task(busy(asyncio.Queue()), name=f"busy-{i}") for i in range(10)]
    await asyncio.sleep(0.5)
    print(json.dumps({"ready": True, "tasks": n}), flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
