"""Load generator for http_server.py: K keep-alive connections on 127.0.0.1, fixed duration.

Each connection sends one GET, reads the whole response (headers + Content-Length body) and
sends the next: a closed loop, so throughput is what the server sustains. Written on
``asyncio.Protocol`` (cheaper per request than the server's streams) so that on a small
machine the server, not the load generator, is the bottleneck.

Usage::

    python benchmarks/workloads/http_load.py PORT [--connections 16] [--duration 3] [--path /]

Prints ``{"connected": K}`` once every connection is open, then after ``--duration`` seconds
``{"responses_per_s": ..., "responses": ..., "elapsed": ..., "connections": K}``.
Connects to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: vmtop-bench\r\n\r\n".encode()


REQUEST = request("/hello")


class Client(asyncio.Protocol):
    def __init__(self, counter: list[int], req: bytes = REQUEST, limit: int = 0) -> None:
        self.counter = counter
        self.request = req
        self.limit = limit  # stop asking once the counter reaches it (0: never)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connected.set_result(None)

    def start(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            i = head.lower().find(b"content-length:")
            length = int(head[i + 15 :].split(b"\r\n", 1)[0]) if i >= 0 else 0
            total = end + 4 + length
            if len(self.buf) < total:
                return
            self.buf = self.buf[total:]
            self.counter[0] += 1
            assert self.transport is not None
            if self.limit and self.counter[0] >= self.limit:
                if not self.done.done():
                    self.done.set_result(None)
                return
            self.transport.write(self.request)


async def main(
    port: int, connections: int, duration: float, path: str = "/hello", requests: int = 0
) -> None:
    loop = asyncio.get_running_loop()
    counter = [0]
    clients = []
    req = request(path)
    for _ in range(connections):
        _, proto = await loop.create_connection(
            lambda: Client(counter, req, requests), "127.0.0.1", port
        )
        await proto.connected
        clients.append(proto)
    print(json.dumps({"connected": connections}), flush=True)
    start_n, t0 = counter[0], time.perf_counter()
    for c in clients:
        c.start()
    if requests:  # a fixed number of responses (one connection), however long they take
        await asyncio.wait([c.done for c in clients], timeout=duration)
    else:
        await asyncio.sleep(duration)
    n, elapsed = counter[0] - start_n, time.perf_counter() - t0
    for c in clients:
        if c.transport is not None:
            c.transport.close()
    await asyncio.sleep(0.05)  # let the closes reach the server
    result = {"responses_per_s": n / elapsed, "responses": n, "elapsed": elapsed}
    result["connections"] = connections
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("port", type=int)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--path", default="/hello", help="the path every request asks for")
    p.add_argument("--requests", type=int, default=0, help="stop after N responses (1 conn.)")
    a = p.parse_args()
    if not 0 < a.port < 65536 or a.connections < 1 or not 0 < a.duration <= 600:
        print("http_load: bad port, connections or duration", file=sys.stderr)
        sys.exit(2)
    asyncio.run(main(a.port, a.connections, a.duration, a.path, a.requests))
