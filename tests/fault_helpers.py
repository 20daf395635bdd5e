"""Helpers for the reliability and security tests: a richer target handle and raw sockets."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from tests.agent_helpers import Target
from vmtop import protocol


class FaultTarget(Target):
    """``tests/targets/fault_target.py`` under ``vmtop run``; see its docstring for commands."""

    def __init__(self, *args: str, python: str = sys.executable) -> None:
        super().__init__("fault_target.py", *args, python=python)

    def __enter__(self) -> FaultTarget:
        return self

    def state(self) -> dict[str, Any]:
        self.send("state")
        return dict(self.read_until("state")["state"])

    def lag(self) -> dict[str, Any]:
        self.send("lag")
        return dict(self.read_until("lag")["lag"])

    def lag_reset(self) -> None:
        self.send("lag_reset")
        self.read_until("lag_reset")

    def check(self, n: int = 1000) -> int:
        self.send(f"check {n}")
        return int(self.read_until("check")["check"])

    def quiet_state(self, timeout: float = 10.0) -> dict[str, Any]:
        """The target's state once no client thread of its agent is left (they end shortly
        after their socket closes: wait for that, bounded)."""
        deadline = time.monotonic() + timeout
        now = self.state()
        while any(n.startswith("vmtop-client") for n in now["threads"]):
            assert time.monotonic() < deadline, now["threads"]
            time.sleep(0.05)
            now = self.state()
        return now

    def settled_state(self, like: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """The target's state once its agent threads match ``like``'s (client threads end
        shortly after their socket closes: wait for that event, bounded)."""
        deadline = time.monotonic() + timeout
        now = self.state()
        while now["threads"] != like["threads"] and time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.state()
        return now


def digest(n: int) -> int:
    """What the target's ``check n`` prints (the same arithmetic, done here)."""
    h = 17
    for i in range(n):
        h = (h * 31 + i * i) % (2**61 - 1)
    return h


def raw_connect(path: Path | str, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


class LineReader:
    """Reads JSON reply lines from a raw socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def line(self) -> dict[str, Any] | None:
        """The next reply, or None once the agent closed the connection."""
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return dict(json.loads(line))


def hello(sock: socket.socket) -> LineReader:
    sock.sendall(
        protocol.encode({"id": 0, "op": "hello", "args": {"protocol": protocol.PROTOCOL_VERSION}})
    )
    reader = LineReader(sock)
    reply = reader.line()
    assert reply is not None and reply["ok"], reply
    return reader


def stderr_after_exit(target: Target) -> str:
    """The target's whole stderr (stop it first)."""
    target.stop()
    assert target.proc.stderr is not None
    return target.proc.stderr.read()
