"""A small deterministic asyncio program for the TUI tests; run it with ``vmtop run``.

Tasks: "hot" (resumes as fast as the loop allows: first by reductions), "inbox" (consumes a
queue slower than "feeder" fills it: its mailbox grows, first by mailbox), "alpha-1..3" and
"beta-1..2" (idle, for the filter), "victim" (prints "victim cancelled" when cancelled).
Prints "ready" once every task exists; exits after ``argv[1]`` seconds (default 60).
"""

import asyncio
import sys


async def hot():
    while True:
        await asyncio.sleep(0)


async def inbox(queue):
    while True:
        await queue.get()
        await asyncio.sleep(0.5)


async def feeder(queue):
    while True:
        queue.put_nowait("message")
        await asyncio.sleep(0.01)


async def handle_request(n):
    await asyncio.sleep(0)
    return n


async def spawner():
    # Short-lived tasks, as a web service makes one per request: they show as a group.
    n = 0
    while True:
        n += 1
        asyncio.create_task(handle_request(n), name=f"request-{n}")
        await asyncio.sleep(0.02)


async def idle():
    await asyncio.Event().wait()


async def victim():
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        print("victim cancelled", flush=True)
        raise


async def main(seconds):
    queue = asyncio.Queue()
    tasks = [
        asyncio.create_task(hot(), name="hot"),
        asyncio.create_task(inbox(queue), name="inbox"),
        asyncio.create_task(feeder(queue), name="feeder"),
        asyncio.create_task(victim(), name="victim"),
        asyncio.create_task(spawner(), name="spawner"),
    ]
    tasks += [asyncio.create_task(idle(), name=f"alpha-{i}") for i in (1, 2, 3)]
    tasks += [asyncio.create_task(idle(), name=f"beta-{i}") for i in (1, 2)]
    await asyncio.sleep(0)
    print("ready", flush=True)
    await asyncio.sleep(seconds)


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0))
