"""Drive the self-checking injection target (shared by test_attach_safety and the soak).

``Checker`` runs tests/targets/inject_checker.py and reads its beats as they come (through
``JsonLines``, which test_attach's targets use too);
:func:`inject_agent_ptrace` loads the agent with vmtop's ptrace injector and
:func:`inject_marker` injects again once the agent is there (a bootstrap that only prints a
line, so every further injection is seen to run exactly once).
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from vmtop.attach import preflight, ptrace_inject
from vmtop.attach.bootstrap import import_paths
from vmtop.attach.ensure import inject_agent
from vmtop.paths import socket_path

TARGETS = Path(__file__).resolve().parent / "targets"
KINDS = ("idle", "busy", "gil", "sleep", "malloc")


class JsonLines:
    """A child process whose stdout is JSON lines, read as they come (no sleeps)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                continue
        self.lines.put(None)

    def next(self, key: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next line that has ``key``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"pid {self.pid} printed no {key!r} in {timeout} s") from None
            if item is None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"pid {self.pid} exited ({self.proc.wait()}): {err[-1500:]}")
            if key in item:
                return item

    def proc_status(self) -> dict[str, str]:
        with open(f"/proc/{self.pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


class Checker(JsonLines):
    """A running checker target (``kind``) and its beats."""

    def __init__(self, kind: str, python: str = sys.executable) -> None:
        # -S for "busy": nothing imports threading, so the payload queues the bootstrap on
        # the main thread (the first import of threading must happen there).
        flags = ["-S"] if kind == "busy" else []
        proc = subprocess.Popen(
            [python, *flags, str(TARGETS / "inject_checker.py"), kind],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        super().__init__(proc)
        self.next("ready")

    def beats(self, n: int) -> dict[str, Any]:
        """The n-th beat from now."""
        for _ in range(n):
            last = self.next("beat")
        return last

    def running_and_untraced(self) -> bool:
        status = self.proc_status()
        return status["TracerPid"] == "0" and status["State"][0] not in "tTZ"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        socket_path(self.pid).unlink(missing_ok=True)


def inject_agent_ptrace(target: Checker) -> Path:
    """Load the agent with the ptrace injector; its socket path."""
    return inject_agent(preflight(target.pid, import_paths()), 15.0, lambda m: None, "ptrace")


def inject_marker(target: Checker, n: int, workdir: Path) -> None:
    """Inject again (the agent is there already): a bootstrap that only prints a line."""
    found = preflight(target.pid, import_paths())
    source = f"import os\nos.write(1, b'{{\"injected\": {n}}}\\n')\n"
    ptrace_inject.inject(found, source, time.time() + 15.0, workdir)
    got = target.next("injected")["injected"]
    if got != n:
        raise AssertionError(f"injection {n} ran as {got}")
