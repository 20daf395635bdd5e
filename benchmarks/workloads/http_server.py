"""A small asyncio-streams HTTP/1.1 keep-alive server: the "realistic" workload.

Each connection is one task (``asyncio.start_server``); a request is read up to the blank
line, its request line and headers are parsed, and a small JSON body is answered with
``Content-Length`` so the connection stays open. Listens on 127.0.0.1 only.

Usage::

    python benchmarks/workloads/http_server.py [--port 0]
    python -m vmtop run -q benchmarks/workloads/http_server.py

Prints ``{"ready": true, "port": P, "pid": N}`` once listening; exits when stdin closes or a
line ``quit`` arrives, after printing ``{"requests": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time


class Stats:
    __slots__ = ("requests",)

    def __init__(self) -> None:
        self.requests = 0


def respond(request_line: bytes, headers: dict[bytes, bytes], n: int) -> bytes:
    method, _, rest = request_line.partition(b" ")
    path = rest.partition(b" ")[0]
    body = json.dumps(
        {"path": path.decode("latin-1"), "method": method.decode("latin-1"), "n": n}
    ).encode()
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: keep-alive\r\n\r\n"
    )
    return head + body


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: Stats) -> None:
    try:
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = raw[:-4].split(b"\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            if length:
                await reader.readexactly(length)
            stats.requests += 1
            writer.write(respond(lines[0], headers, stats.requests))
            await writer.drain()
            if headers.get(b"connection", b"").lower() == b"close":
                return
    except (ConnectionError, asyncio.CancelledError):
        return  # the client went away, or the server is shutting down
    finally:
        writer.close()


async def wait_for_quit() -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    fd = sys.stdin.fileno()
    buf = bytearray()

    def readable() -> None:
        chunk = os.read(fd, 4096)
        buf.extend(chunk)
        if (not chunk or b"quit" in buf) and not done.done():
            loop.remove_reader(fd)
            done.set_result(None)

    loop.add_reader(fd, readable)
    await done


async def main(port: int) -> None:
    stats = Stats()
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, stats), host="127.0.0.1", port=port, backlog=512
    )
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"ready": True, "port": bound, "pid": os.getpid()}), flush=True)
    t0 = time.perf_counter()
    async with server:
        await wait_for_quit()
    elapsed = time.perf_counter() - t0
    print(json.dumps({"requests": stats.requests, "elapsed": elapsed}), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    asyncio.run(main(p.parse_args().port))
