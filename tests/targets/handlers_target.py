"""A task-per-request program: ``handle_request`` tasks made all the time, as a web server
makes them (tests/test_exporter_prometheus.py), and a ``backlog`` consumer that takes an item
every 40 ms from a queue fed every 20 ms, so its mailbox grows. Prints {"ready": true} once
running and exits when stdin closes."""

from __future__ import annotations

import asyncio
import json

from stdin_lines import read_lines


async def handle_request(n: int) -> int:
    await asyncio.sleep(0)
    await asyncio.sleep(0.001)
    return n


async def backlog(queue: asyncio.Queue[int]) -> None:
    while True:
        await queue.get()
        await asyncio.sleep(0.04)


async def main() -> None:
    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()
    read_lines(loop, lambda line: line is None and stdin_closed.set())
    queue: asyncio.Queue[int] = asyncio.Queue()
    consumer = loop.create_task(backlog(queue), name="backlog")
    print(json.dumps({"ready": True}), flush=True)
    n = 0
    while not stdin_closed.is_set():
        queue.put_nowait(n)
        for _ in range(10):
            n += 1
            loop.create_task(handle_request(n))
        await asyncio.sleep(0.02)
    consumer.cancel()


asyncio.run(main())
