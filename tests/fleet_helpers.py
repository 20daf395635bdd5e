"""A multi-process server for the ``--subprocesses`` tests: uvicorn with N workers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.agent_helpers import TARGETS


class Uvicorn:
    """``vmtop run -m uvicorn uvicorn_app:app --workers N``; ``workers`` are read from its log."""

    def __init__(self, workers: int) -> None:
        pytest.importorskip("uvicorn")
        pytest.importorskip("starlette")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vmtop", "run", "-q", "-m", "uvicorn", "uvicorn_app:app",
             "--workers", str(workers), "--host", "127.0.0.1", "--port", "0"],
            cwd=TARGETS,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )  # fmt: skip
        self.pid = self.proc.pid
        self.workers: list[int] = []
        started = 0
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # blocking reads: each line is an event in the server
            m = re.search(r"Started server process \[(\d+)\]", line)
            if m:
                self.workers.append(int(m.group(1)))
            started += "Application startup complete" in line
            if started == workers:
                break
        assert len(self.workers) == workers, f"uvicorn exited ({self.proc.poll()})"

    def stop(self) -> None:
        with_group = os.getpgid(self.pid)
        os.killpg(with_group, signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(with_group, signal.SIGKILL)
            self.proc.wait(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture(scope="module", name="uvicorn")
def uvicorn_fixture() -> Iterator[Uvicorn]:
    """A uvicorn server with 2 workers for a test module (import this fixture into it)."""
    server = Uvicorn(2)
    try:
        yield server
    finally:
        server.stop()
