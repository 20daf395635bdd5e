"""Starlette under uvicorn with a background worker fed by the request handlers through a
module-level queue (issue 12: the worker's mailbox was "–" while 15,520 jobs waited).

Usage: python uvicorn_worker_app.py asyncio|uvloop. ``POST /jobs/N`` queues N jobs and answers
{"queued": JOBS.qsize()}. The worker takes a job, works a second, and (so that the length a
test reads is exact) puts it back. Prints {"ready": true, "port": P, ...} once serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

JOBS: asyncio.Queue[int] = asyncio.Queue()


def say(**obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def worker() -> None:
    while True:
        job = await JOBS.get()
        JOBS.put_nowait(job)
        await asyncio.sleep(1.0)


async def jobs(request: Request) -> JSONResponse:
    for i in range(int(request.path_params["n"])):
        JOBS.put_nowait(i)
    return JSONResponse({"queued": JOBS.qsize()})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    task = asyncio.create_task(worker(), name="jobs-worker")
    say(ready=True, port=PORT, pid=os.getpid())
    yield
    task.cancel()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORT = free_port()
app = Starlette(routes=[Route("/jobs/{n:int}", jobs, methods=["POST"])], lifespan=lifespan)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, loop=sys.argv[1], log_level="warning")
