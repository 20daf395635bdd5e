"""Consumers whose get() never suspends, and threads that take from queues (tests/test_mailboxes.py).

Asyncio tasks, each with a backlog that stays exact (what a consumer takes it puts back in the
same step, so the length seen between steps never moves):

- ``sleepy``: takes one message, then ``await asyncio.sleep(1.0)``; the queue is an argument
  (500 waiting). Its get() never suspends, so only its dequeues or what it holds tell.
- ``actor``: an ``Actor`` whose ``run`` waits on an event that is never set before it would
  ``await self.inbox.get()`` (300 waiting): found from ``self.inbox`` before any get.
- ``global-worker``: a background worker on a module-level queue (``JOBS``, 200 waiting), the
  uvicorn pattern: request handlers put, one worker gets.
- ``pool-0..2``: three workers on one queue (``work``, 50 waiting): a shared queue, its own row.
- ``hidden``: takes through a ``functools.partial`` (nothing it holds names a queue; 400
  waiting) when told ("nudge"): only its dequeues tell.
- ``producer``: holds ``sleepy``'s queue too, but only puts: never its consumer.
- 200 ``idle-N`` tasks asleep.

Threads: ``taker`` takes items from a ``queue.Queue`` on command ("take N": it takes N, prints
{"taken": total}; it also took the order from a ``SimpleQueue``); "submit N" runs N jobs on a
one-thread ``ThreadPoolExecutor`` (its worker takes them from a ``SimpleQueue``); ``spinner`` burns CPU from "spin" to "rest"; ``parker`` blocks for good in
``queue.Queue.get`` on "park" (prints {"parking": true} first). Commands on stdin:
"take N", "submit N", "spin", "rest", "park", "nudge", "state" (prints {"wrapped": [...]}: which
dequeue methods are not the originals), "quit N". The first line printed is {"ready": true, ...}.
"""

import asyncio
import concurrent.futures
import functools
import json
import os
import queue
import sys
import threading
import time

from stdin_lines import read_lines

JOBS: asyncio.Queue = asyncio.Queue()
ORIGINAL = {
    "a": asyncio.Queue.get_nowait,
    "t": queue.Queue.get,
    "s": vars(queue.SimpleQueue)["get"],
    "sn": vars(queue.SimpleQueue)["get_nowait"],
}


def say(**obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def sleepy(q):
    while True:
        item = await q.get()
        q.put_nowait(item)
        await asyncio.sleep(1.0)


async def producer(q):
    while True:
        await asyncio.sleep(3600)
        await q.put(None)


class Actor:
    def __init__(self, n):
        self.inbox = asyncio.Queue()
        for i in range(n):
            self.inbox.put_nowait(i)
        self.go = asyncio.Event()

    async def run(self):
        await self.go.wait()
        while True:
            msg = await self.inbox.get()
            self.inbox.put_nowait(msg)
            await asyncio.sleep(1.0)


async def global_worker():
    while True:
        job = await JOBS.get()
        JOBS.put_nowait(job)
        await asyncio.sleep(1.0)


async def hidden(take, nudge):
    # Takes through a partial: nothing it holds names a queue, so only its dequeues tell.
    n = 0
    while True:
        await nudge.wait()
        nudge.clear()
        item = await take()
        take.args[0].put_nowait(item)
        n += 1
        say(nudged=n)


async def pool_worker(work):
    while True:
        item = await work.get()
        work.put_nowait(item)
        await asyncio.sleep(0.5)


def spin(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def spinner(hot):
    while True:
        hot.wait()
        while hot.is_set():
            spin(10_000)


def parker(orders):
    orders.get()
    say(parking=True)
    queue.Queue().get()  # empty for good: blocked in the (wrapped, once attached) get


def taker(inbox, orders):
    taken = 0
    while True:
        n = orders.get()
        for _ in range(n):
            inbox.get()
            taken += 1
        say(taken=taken)


async def main():
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()
    for i in range(500):
        q.put_nowait(i)
    for i in range(200):
        JOBS.put_nowait(i)
    work = asyncio.Queue()
    for i in range(50):
        work.put_nowait(i)
    nudge = asyncio.Event()
    actor = Actor(300)
    secret = asyncio.Queue()
    for i in range(400):
        secret.put_nowait(i)
    take = functools.partial(asyncio.Queue.get, secret)
    tasks = [
        asyncio.create_task(sleepy(q), name="sleepy"),
        asyncio.create_task(producer(q), name="producer"),
        asyncio.create_task(actor.run(), name="actor"),
        asyncio.create_task(global_worker(), name="global-worker"),
        asyncio.create_task(hidden(take, nudge), name="hidden"),
    ]
    tasks += [asyncio.create_task(pool_worker(work), name=f"pool-{i}") for i in range(3)]
    tasks += [asyncio.create_task(asyncio.sleep(3600), name=f"idle-{i}") for i in range(200)]
    inbox: queue.Queue = queue.Queue()
    for i in range(10_000):
        inbox.put(i)
    orders: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=taker, args=(inbox, orders), name="taker", daemon=True).start()
    hot = threading.Event()
    threading.Thread(target=spinner, args=(hot,), name="spinner", daemon=True).start()
    park: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=parker, args=(park,), name="parker", daemon=True).start()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="exec")
    stop = asyncio.Event()
    code = {"value": 0}

    def on_line(line):
        if line is None:
            stop.set()
            return
        cmd, *args = line.split()
        if cmd == "take":
            orders.put(int(args[0]))
        elif cmd == "spin":
            hot.set()
        elif cmd == "rest":
            hot.clear()
        elif cmd == "submit":
            jobs = [pool.submit(spin, 10) for _ in range(int(args[0]))]
            for job in jobs:
                job.result()
            say(submitted=len(jobs))
        elif cmd == "state":
            say(
                wrapped=[
                    asyncio.Queue.get_nowait is not ORIGINAL["a"],
                    queue.Queue.get is not ORIGINAL["t"],
                    vars(queue.SimpleQueue)["get"] is not ORIGINAL["s"],
                    vars(queue.SimpleQueue)["get_nowait"] is not ORIGINAL["sn"],
                ]
            )
        elif cmd == "park":
            park.put(True)
        elif cmd == "nudge":
            nudge.set()
        elif cmd == "quit":
            code["value"] = int(args[0])
            stop.set()

    read_lines(loop, on_line)
    await asyncio.sleep(0.05)  # every task has reached its first wait
    say(ready=True, pid=os.getpid(), started=time.monotonic())
    await stop.wait()
    loop.remove_reader(sys.stdin.fileno())
    for t in tasks:
        t.cancel()
    return code["value"]


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
