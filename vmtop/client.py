"""A typed client of the agent protocol (used by ``vmtop top``, the TUI and the tests)."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

from vmtop import __version__
from vmtop import protocol as P
from vmtop.paths import UnsafeDirectory, check_dir, socket_path
from vmtop.records import KINDS, Snapshot


class ClientError(Exception):
    """Anything that stops a client from talking to an agent; the message says what to do."""


class NoAgent(ClientError):
    pass


class TargetGone(ClientError):
    pass


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def agent_socket(pid: int) -> Path:
    """The socket of ``pid``'s agent; raises :class:`ClientError` when there is none."""
    if pid <= 0:
        raise ClientError(f"invalid pid {pid}")
    if not pid_exists(pid):
        raise ClientError(f"no process with pid {pid}")
    path = socket_path(pid)
    try:
        check_dir(path.parent)
    except FileNotFoundError:
        raise NoAgent(_no_agent(pid)) from None
    except UnsafeDirectory as exc:
        raise ClientError(str(exc)) from None
    if not path.exists():
        raise NoAgent(_no_agent(pid))
    return path


def _no_agent(pid: int) -> str:
    return (
        f"no vmtop agent in pid {pid}: start the program with 'vmtop run', call "
        f"vmtop.agent.start() in it, or inject one with 'vmtop attach {pid} --inject'"
    )


class AgentClient:
    """One connection to one agent. Use as a context manager; every call may raise
    :class:`ClientError` (:class:`TargetGone` when the target exits mid-conversation)."""

    def __init__(self, pid: int, timeout: float = 5.0) -> None:
        self.pid = pid
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._buf = b""
        self._next_id = 0
        self.agent_version = ""

    def connect(self) -> AgentClient:
        path = agent_socket(self.pid)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(path))
        except PermissionError:
            sock.close()
            raise ClientError(
                f"permission denied on {path}: run vmtop as the target's user"
            ) from None
        except (ConnectionRefusedError, FileNotFoundError):
            sock.close()
            raise NoAgent(
                f"the agent of pid {self.pid} does not answer (stale socket {path})"
            ) from None
        except OSError as exc:
            sock.close()
            raise ClientError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        self.sock = sock
        hello = self.request("hello", protocol=P.PROTOCOL_VERSION, client=f"vmtop {__version__}")
        self.agent_version = str(hello.get("agent", ""))
        return self

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.sendall(P.encode({"id": 0, "op": "bye", "args": {}}))
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def __enter__(self) -> AgentClient:
        return self.connect() if self.sock is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------------
    def request(self, op: str, **args: Any) -> Any:
        if self.sock is None:
            raise ClientError("not connected")
        self._next_id += 1
        req_id = self._next_id
        try:
            self.sock.sendall(P.encode({"id": req_id, "op": op, "args": args}))
            reply = self._read_reply(req_id)
        except TimeoutError:
            raise ClientError(
                f"the agent of pid {self.pid} did not answer within {self.timeout:.0f} s"
            ) from None
        except (BrokenPipeError, ConnectionResetError, EOFError):
            raise TargetGone(self._gone_message()) from None
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise ClientError(
                f"agent: {err.get('message', 'unknown error')} ({err.get('code', '?')})"
            )
        return reply.get("result")

    def _gone_message(self) -> str:
        if not pid_exists(self.pid):
            return f"target pid {self.pid} exited"
        return f"the agent of pid {self.pid} closed the connection"

    def _read_reply(self, req_id: int) -> dict[str, Any]:
        assert self.sock is not None
        while True:
            while b"\n" not in self._buf:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise EOFError
                self._buf += chunk
                if len(self._buf) > P.MAX_RESPONSE_BYTES:
                    raise ClientError("agent reply too large")
            line, self._buf = self._buf.split(b"\n", 1)
            message = P.decode(line)
            if message.get("id") in (req_id, None):
                return message

    def snapshot(
        self,
        sort: str = "reductions",
        limit: int = 50,
        filter: str = "",
        accumulate: bool = False,
        kinds: tuple[str, ...] = KINDS,
        memory: bool = True,
    ) -> Snapshot:
        result = self.request(
            "snapshot",
            sort=sort,
            limit=limit,
            filter=filter,
            accumulate=accumulate,
            kinds=list(kinds),
            memory=memory,
        )
        return Snapshot.from_dict(result)

    def detail(self, key: str) -> dict[str, Any]:
        return dict(self.request("detail", key=key))

    def cancel(self, key: str) -> dict[str, Any]:
        return dict(self.request("cancel", key=key))


def connect(pid: int, timeout: float = 5.0) -> AgentClient:
    return AgentClient(pid, timeout).connect()


__all__ = ["AgentClient", "ClientError", "NoAgent", "TargetGone", "TracebackType", "connect"]
