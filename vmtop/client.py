"""A typed client of the agent protocol (used by ``vmtop top``, the TUI and the tests).

:class:`AgentClient` is the transport: a connection, ``request(op, **args)`` and the monitor's
own requests (snapshot, detail, cancel). Profiling jobs are :mod:`vmtop.jobs_client`'s, which
takes a connected client: ``jobs_client.profile(client, 5)``.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from vmtop import protocol
from vmtop._version import __version__
from vmtop.discovery import LISTENING, STALE, state_at
from vmtop.paths import UnsafeDirectory, agent_socket_path, check_dir
from vmtop.records import KINDS, Snapshot


class ClientError(Exception):
    """Anything that stops a client from talking to an agent; the message says what to do."""


class NoAgent(ClientError):
    pass


class TargetGone(ClientError):
    pass


def pid_exists(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``pid`` to end (pidfd where the kernel has it)."""
    if not pid_exists(pid):
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (OSError, AttributeError):
        return not pid_exists(pid)
    try:
        readable, _, _ = select.select([fd], [], [], timeout)  # readable once it exited
    finally:
        os.close(fd)
    return bool(readable) or not pid_exists(pid)


def agent_socket(pid: int) -> Path:
    """The socket of ``pid``'s agent; raises :class:`ClientError` when there is none."""
    if pid <= 0:
        raise ClientError(f"invalid pid {pid}")
    if not pid_exists(pid):
        raise ClientError(f"no process with pid {pid}")
    try:
        where = agent_socket_path(pid)  # through /proc/PID/root for a container's process
    except OSError:
        raise ClientError(f"no process with pid {pid}") from None
    path = where.path
    try:
        check_dir(path.parent, where.owner)
    except FileNotFoundError:
        raise NoAgent(_no_agent(pid)) from None
    except UnsafeDirectory as exc:
        raise ClientError(str(exc)) from None
    if not path.exists():
        raise NoAgent(_no_agent(pid))
    state = state_at(pid, where)  # is it pid's own? (a container's pid N shares our /tmp)
    if state == STALE:
        raise NoAgent(f"the agent of pid {pid} does not answer (stale socket {path})")
    if state != LISTENING:
        raise NoAgent(f"{path} is another process's agent socket: " + _no_agent(pid))
    return path


def _connect(sock: socket.socket, path: str, timeout: float) -> None:
    """``connect``; a full listen queue (EAGAIN on a Unix socket) is retried until timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _no_agent(pid: int) -> str:
    return (
        f"no vmtop agent in pid {pid}: start the program with 'vmtop run', call "
        f"vmtop.agent.start() in it, or inject one with 'vmtop attach {pid} --inject'"
    )


class AgentClient:
    """One connection to one agent. Use as a context manager; every call may raise
    :class:`ClientError` (:class:`TargetGone` when the target exits mid-conversation)."""

    def __init__(self, pid: int, timeout: float = 15.0) -> None:
        self.pid = pid
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._buf = b""
        self._next_id = 0
        self.agent_version = ""
        self.agent_ops: list[str] | None = None

    def connect(self) -> AgentClient:
        path = agent_socket(self.pid)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            _connect(sock, str(path), self.timeout)
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
        hello = self.request(
            "hello", protocol=protocol.PROTOCOL_VERSION, client=f"vmtop {__version__}"
        )
        self.agent_version = str(hello.get("agent", ""))
        ops = hello.get("ops")
        self.agent_ops = [str(op) for op in ops] if isinstance(ops, list) else None
        return self

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.sendall(protocol.encode({"id": 0, "op": "bye", "args": {}}))
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
            # An agent that closed on us may have said why first (too many clients): read it.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.sock.sendall(protocol.encode({"id": req_id, "op": op, "args": args}))
            reply = self._read_reply(req_id)
        except TimeoutError:
            raise ClientError(
                f"the agent of pid {self.pid} did not answer within {self.timeout:.0f} s"
            ) from None
        except (BrokenPipeError, ConnectionResetError, EOFError):
            raise TargetGone(self._gone_message()) from None
        except protocol.ProtocolError as exc:
            raise ClientError(f"the agent of pid {self.pid} sent a bad reply: {exc}") from None
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise ClientError(
                f"agent: {err.get('message', 'unknown error')} ({err.get('code', '?')})"
            )
        return reply.get("result")

    def _gone_message(self) -> str:
        # An exiting target closes its sockets a moment before the process is gone.
        if wait_exit(self.pid, 1.0):
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
                if len(self._buf) > protocol.MAX_RESPONSE_BYTES:
                    raise ClientError("agent reply too large")
            line, self._buf = self._buf.split(b"\n", 1)
            message = protocol.decode(line)
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
        groups: int = 20,
    ) -> Snapshot:
        result = self.request(
            "snapshot",
            sort=sort,
            limit=limit,
            filter=filter,
            accumulate=accumulate,
            kinds=list(kinds),
            memory=memory,
            groups=groups,
        )
        return Snapshot.from_dict(result)

    def detail(self, key: str) -> dict[str, Any]:
        return dict(self.request("detail", key=key))

    def cancel(self, key: str) -> dict[str, Any]:
        return dict(self.request("cancel", key=key))

    def job_connection(self, timeout: float) -> AgentClient:
        """A second connection to the same agent, for a profiling job (``vmtop.jobs_client``)
        that runs while this one keeps asking for snapshots."""
        return AgentClient(self.pid, timeout).connect()


__all__ = ["AgentClient", "ClientError", "NoAgent", "TargetGone", "TracebackType"]
