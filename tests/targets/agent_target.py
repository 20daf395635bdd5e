"""A deterministic asyncio target for the agent tests, driven by lines on stdin.

Commands: "state" (print hook state as JSON), "block S" (time.sleep(S) on the loop),
"wake" (resume the scripted task: it then makes exactly STEPS more steps), "quit N".
Prints one JSON object per line; the first is {"ready": true, ...}.
"""

import asyncio
import gc
import json
import os
import queue
import sys
import threading
import time

from stdin_lines import read_lines

STEPS = 7  # the scripted task resumes 1 (wake) + STEPS (sleep(0)) times per "wake"
ORIGINAL_RUN = asyncio.events.Handle._run
ORIGINAL_GET_NOWAIT = asyncio.Queue.get_nowait
ORIGINAL_TQ_GET = queue.Queue.get


def say(**obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def crunch_numbers(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


async def hot():
    # Steps of ~10-20 ms. A loop that yields every 2 ms lets the event loop release and
    # retake the GIL (select(0)) faster than a waiting thread's switch interval: CPython's
    # take_gil then never asks for the GIL, and an agent thread can starve for seconds
    # (docs/attach.md, "Hello latency ..."). These tests are about columns, not that.
    while True:
        crunch_numbers(200000)
        await asyncio.sleep(0)


async def backlog_consumer(q):
    # Busy, not suspended in get(): it takes one item, puts it back, and works a while.
    while True:
        item = await q.get()
        q.put_nowait(item)
        await asyncio.sleep(0.02)


async def subscriber(q):
    while True:
        await q.get()


async def scripted(event):
    while True:
        await event.wait()
        event.clear()
        for _ in range(STEPS):
            await asyncio.sleep(0)
        say(scripted_done=True)


async def victim():
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        say(victim_cancelled=True)
        raise


def busy_thread(done):
    end = time.thread_time() + 0.4
    while time.thread_time() < end:
        crunch_numbers(1000)
    done["cpu"] = time.thread_time()
    say(busy_thread_cpu=done["cpu"])
    threading.Event().wait()


async def main():
    loop = asyncio.get_running_loop()
    backlog = asyncio.Queue()
    for i in range(500):
        backlog.put_nowait(i)
    shared = asyncio.Queue()
    event = asyncio.Event()
    tasks = [
        asyncio.create_task(hot(), name="hot"),
        asyncio.create_task(backlog_consumer(backlog), name="backlog-consumer"),
        asyncio.create_task(scripted(event), name="scripted"),
        asyncio.create_task(victim(), name="victim"),
    ]
    tasks += [asyncio.create_task(subscriber(shared), name=f"sub-{i}") for i in range(3)]
    done = {}
    threading.Thread(target=busy_thread, args=(done,), name="busy-thread", daemon=True).start()
    stop = asyncio.Event()
    code = {"value": 0}

    def on_line(line):
        if line is None:
            stop.set()
            return
        cmd, *args = line.split()
        if cmd == "state":
            say(
                handle_run_original=asyncio.events.Handle._run is ORIGINAL_RUN,
                get_nowait_original=asyncio.Queue.get_nowait is ORIGINAL_GET_NOWAIT,
                tq_get_original=queue.Queue.get is ORIGINAL_TQ_GET,
                threads=threading.active_count(),
                thread_names=sorted(t.name for t in threading.enumerate()),
                gc_callbacks=len(gc.callbacks),
                fds=len(os.listdir("/proc/self/fd")),
                profile=sys.getprofile() is not None,
                task_factory=loop.get_task_factory() is not None,
            )
        elif cmd == "block":
            time.sleep(float(args[0]))
            say(blocked=float(args[0]))
        elif cmd == "wake":
            event.set()
        elif cmd == "quit":
            code["value"] = int(args[0])
            stop.set()

    read_lines(loop, on_line)
    say(ready=True, pid=os.getpid(), steps=STEPS)
    await stop.wait()
    loop.remove_reader(sys.stdin.fileno())
    for t in tasks:
        t.cancel()
    return code["value"]


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
