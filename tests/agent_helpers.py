"""Start a real target under ``vmtop run`` and talk to it (shared by the agent tests)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from vmtop.paths import socket_path

TARGETS = Path(__file__).parent / "targets"


class Target:
    """A target process under ``python -m vmtop run``, with JSON lines on stdout."""

    def __init__(
        self,
        script: str,
        *args: str,
        python: str = sys.executable,
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``argv`` replaces the ``vmtop run`` command line (a target under plain python)."""
        self.proc = subprocess.Popen(
            argv or [python, "-m", "vmtop", "run", str(TARGETS / script), *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.pid = self.proc.pid
        self.pending: list[dict[str, Any]] = []
        # Lines are read on a thread, so that read_until's timeout holds when the target
        # prints nothing at all (a blocking readline waited for pytest's 120 s instead).
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read_stdout, name="target-stdout", daemon=True)
        self._reader.start()
        self.ready = self.read_until("ready")

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self._lines.put(line)
        finally:
            self._lines.put("")  # EOF

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read_until(self, key: str, timeout: float = 20.0) -> dict[str, Any]:
        """The next unread JSON line from stdout that has ``key`` (lines without it are kept
        for later calls). A blocking read: the target prints it when the event happened."""
        for i, obj in enumerate(self.pending):
            if key in obj:
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if not line:
                self._lines.put("")  # EOF stays EOF for the next call
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"target exited ({self.proc.poll()}): {err[-2000:]}")
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if key in obj:
                return dict(obj)
            self.pending.append(dict(obj))
        raise AssertionError(f"target did not print {key!r} in {timeout} s")

    def state(self) -> dict[str, Any]:
        self.send("state")
        return self.read_until("handle_run_original")

    @property
    def socket(self) -> Path:
        return socket_path(self.pid)

    def stop(self) -> int:
        if self.proc.poll() is None:
            try:
                self.send("quit 0")
                return self.proc.wait(5)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                pass
            # A target that does not read its stdin (the web servers): Ctrl-C, then kill. Each
            # such teardown waited the whole 10 s before (2 minutes of every suite run).
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        # The reader sees EOF once the target (and any child that inherited its stdout) is
        # gone; closing a stream another thread reads would wait for that read.
        self._reader.join(5)
        streams = [self.proc.stdin, self.proc.stderr]
        if not self._reader.is_alive():
            streams.append(self.proc.stdout)
        for stream in streams:
            if stream is not None:
                stream.close()


def vmtop_cmd(*args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmtop", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "160"},
        **kwargs,
    )


def communicate_or_dump(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """``proc.communicate(timeout)``; if it hangs, fail with where it hangs: a py-spy dump of
    it and of its children, and what it printed."""
    try:
        out, err = proc.communicate(timeout=timeout)
        return out or "", err or ""
    except subprocess.TimeoutExpired:
        dumps = []
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        for pid in [str(proc.pid), *children]:
            ps = subprocess.run(["ps", "-o", "pid,stat,args", "-p", pid], capture_output=True)
            dump = subprocess.run(
                ["py-spy", "dump", "--pid", pid], capture_output=True, text=True, timeout=30
            )
            dumps.append(f"{ps.stdout.decode()}\n{dump.stdout}{dump.stderr}")
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"still running after {timeout} s\n" + "\n".join(dumps) + f"\nstderr:\n{err}"
        ) from None
