"""A Starlette app for ``uvicorn --workers N`` under ``vmtop run`` (tests/test_subprocesses.py):
each worker is a spawned interpreter with an agent of its own."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(request: object) -> JSONResponse:
    return JSONResponse({"pid": os.getpid()})


app = Starlette(routes=[Route("/", hello)])
