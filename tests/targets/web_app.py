"""A small web service, as users run them: aiohttp, or Starlette under uvicorn (uvloop or the
asyncio loop). One short task per request, which is what vmtop must watch cheaply.

Usage: python web_app.py aiohttp|uvicorn-uvloop|uvicorn-asyncio [--port P]
Routes: ``/item/{n}`` answers JSON after ``n`` awaits of ``asyncio.sleep(0)`` (so a request's
step count is known), ``/`` answers at once, ``/gc`` answers ``gc.get_stats()`` (collections
per generation since the start, with or without vmtop). Prints {"ready": true, "port": P, "pid": N} once
listening on 127.0.0.1; exits on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import socket
import sys
from collections.abc import AsyncIterator


def say(**obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def pause(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_aiohttp(port: int) -> None:
    from aiohttp import web

    async def item(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        await pause(n)
        return web.json_response({"item": n, "ok": True})

    async def root(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def gc_stats(request: web.Request) -> web.Response:
        return web.json_response(gc.get_stats())

    async def announce(app: web.Application) -> None:
        say(ready=True, port=port, pid=os.getpid(), server="aiohttp")

    app = web.Application()
    app.router.add_get("/", root)
    app.router.add_get("/item/{n}", item)
    app.router.add_get("/gc", gc_stats)
    app.on_startup.append(announce)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def run_uvicorn(port: int, loop: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def item(request: Request) -> JSONResponse:
        n = int(request.path_params["n"])
        await pause(n)
        return JSONResponse({"item": n, "ok": True})

    async def root(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def gc_stats(request: Request) -> JSONResponse:
        return JSONResponse(gc.get_stats())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        say(ready=True, port=port, pid=os.getpid(), server=f"uvicorn-{loop}")
        yield

    app = Starlette(
        routes=[Route("/", root), Route("/item/{n:int}", item), Route("/gc", gc_stats)],
        lifespan=lifespan,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, loop=loop, log_level="warning", access_log=False)


def main() -> None:
    kind = sys.argv[1]
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else free_port()
    if kind == "aiohttp":
        run_aiohttp(port)
    elif kind in ("uvicorn-uvloop", "uvicorn-asyncio"):
        run_uvicorn(port, kind.split("-", 1)[1])
    else:
        raise SystemExit(f"unknown server {kind!r}")


if __name__ == "__main__":
    main()
