"""The agent's listener: a daemon thread serving a Unix stream socket, one thread per client.

Rules (docs/security.md): the socket lives in a 0700 directory checked with lstat, is 0600 itself,
and every accepted peer's uid (``SO_PEERCRED``) must be ours or root. A client that sends a
request line over 64 KiB, or does not read its replies within ``SEND_TIMEOUT``, is dropped
(and counted): the target never waits on a slow client. Errors in a handler are answered as
``internal`` and never reach the program.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profilers import priority, switching
from vmtop import protocol
from vmtop._version import __version__
from vmtop.agent.collector import Collector
from vmtop.agent.detail import NotFound, cancel, detail
from vmtop.agent.loops import LoopTimeout
from vmtop.agent.snapshot import Session, SnapshotRequest, take_snapshot
from vmtop.paths import ensure_dir, socket_path

if TYPE_CHECKING:
    from vmtop.agent.jobs import JobManager

log = logging.getLogger("vmtop.agent")

MAX_CLIENTS = 16
SEND_TIMEOUT = 5.0
ACCEPT_POLL = 0.25
# The listener's wait for a client: stop() wakes it by connecting, so this only bounds how
# long a lost wake-up goes unnoticed (and how often an idle agent takes the GIL).
LISTEN_WAIT = 5.0
FLUSH_BYTES = 256 * 1024  # replies batched per received chunk before a send
BATCH_BELOW = 4096  # only replies smaller than this wait for others
# GIL switch interval while a request is served (the program's own, 5 ms by default, comes
# back after): hello and a snapshot take 10-50 ms instead of 1-3 s when its threads are busy.
REQUEST_SWITCH_INTERVAL = 0.0005
# How long in all the main thread makes way while one received chunk of requests is served
# (the waits for the loop's own work do not count); past it the GIL goes the ordinary way.
# The main thread is parked meanwhile, so big replies must not hold it longer than this
# (test_slow_clients: a section of 0.1 s, or 20 ms renewed at each wait, showed as the
# loop's lag p99).
REQUEST_URGENT_LIMIT = 0.02
# The most the main thread makes way for one hello: the first one sets the hooks up and
# imports what they need (0.1-0.25 s seen without a bytecode cache); past it the GIL goes the
# ordinary way, which behind a loop of 1-2 ms steps means seconds (profilers/priority.py).
HANDSHAKE_PAUSE = 0.3
# How long starting one of the agent's threads waits for it to reach its first wait (see
# _start_thread); it takes microseconds unless the GIL is held elsewhere.
THREAD_READY_WAIT = 1.0


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    data = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", data)
    return pid, uid, gid


class AgentThread(threading.Thread):
    """Marks the agent's own threads so thread listings leave them out."""

    _vmtop_agent = True

    def __init__(self, name: str, target: Any) -> None:
        super().__init__(name=name, target=target, daemon=True)


class Server:
    def __init__(self, collector: Collector, path: Path | None = None) -> None:
        self.collector = collector
        self._jobs: JobManager | None = None  # this agent's profiling jobs (see jobs)
        self.pid = os.getpid()
        self.path = path or socket_path(self.pid)
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.connections: set[socket.socket] = set()
        self.rejected = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def jobs(self) -> JobManager:
        """This agent's profiling jobs, made at the first job request: the jobs package is
        not imported with the agent (an attach waits for that import; docs/attach.md)."""
        with self._lock:
            if self._jobs is None:
                from vmtop.agent.jobs import JobManager

                self._jobs = JobManager(self.collector)
            return self._jobs

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        ensure_dir()
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            sock.listen(64)  # a burst of clients queues here instead of failing with EAGAIN
            sock.settimeout(ACCEPT_POLL)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.thread = _start_thread(f"vmtop-agent-{self.pid}", self._serve)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._wake_accept()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=2)
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None
        self._unlink()

    def _wake_accept(self) -> None:
        """Connect once so the accept returns now, not at its next poll: a short-lived
        process (a child under ``vmtop run``) exits without waiting ``ACCEPT_POLL``."""
        if self.sock is None or self.thread is None or not self.thread.is_alive():
            return
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.settimeout(ACCEPT_POLL)
            s.connect(str(self.path))

    def close_in_child(self) -> None:
        """After fork: the child must not serve (or remove) the parent's socket."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock = None
        for conn in self.connections:  # else the parent's clients see no EOF while we live
            with contextlib.suppress(OSError):
                conn.close()
        self.connections.clear()

    def _remove_stale(self) -> None:
        # A socket left by a dead process that had our pid: nobody answers on it.
        if not self.path.exists() and not self.path.is_symlink():
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect(str(self.path))
        except OSError:
            self.path.unlink(missing_ok=True)
        else:
            raise RuntimeError(f"another agent already listens on {self.path}")
        finally:
            probe.close()

    def _unlink(self) -> None:
        with contextlib.suppress(OSError):
            if os.getpid() == self.pid:
                self.path.unlink(missing_ok=True)

    # -- serving ----------------------------------------------------------------------------
    def _serve(self, ready: threading.Event) -> None:
        while not self._stop.is_set():
            sock = self.sock
            if sock is None:
                return
            ready.set()  # waiting from the next line on (see _start_thread)
            # The wait takes the GIL back ahead of a busy main thread (priority.py); the
            # accept and the client thread's start then run with the main thread making way.
            try:
                if not priority.wait_readable(sock.fileno(), LISTEN_WAIT):
                    continue
            except (OSError, ValueError):  # closed under us by stop()
                if self._stop.is_set():
                    return
                continue
            with priority.urgent():
                try:
                    conn, _ = sock.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if self._stop.is_set():
                        return
                    continue
                if self._stop.is_set():  # the wake-up from stop()
                    conn.close()
                    return
                try:
                    self._admit(conn)
                except Exception:
                    log.debug("vmtop agent: error admitting a client", exc_info=True)
                    with contextlib.suppress(OSError):
                        conn.close()

    def _admit(self, conn: socket.socket) -> None:
        pid, uid, _ = peer_credentials(conn)
        if uid not in (os.getuid(), 0):
            self.rejected += 1
            log.warning("vmtop agent: refused a client of uid %d (pid %d)", uid, pid)
            conn.close()
            return
        with self._lock:
            if len(self.connections) >= MAX_CLIENTS:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    msg = f"too many clients: {MAX_CLIENTS} are connected (close one and retry)"
                    conn.sendall(protocol.encode(protocol.error(None, "busy", msg)))
                conn.close()
                return
            self.connections.add(conn)
        _start_thread(
            f"vmtop-client-{pid}",
            lambda ready: self._client(conn, f"pid {pid} uid {uid}", ready),
        )

    def _client(self, conn: socket.socket, peer: str, ready: threading.Event) -> None:
        conn.settimeout(SEND_TIMEOUT)
        attached = False
        session: Session | None = None
        buf = b""
        handshake: priority.Urgent | None = None
        try:
            while not self._stop.is_set():
                ready.set()  # waiting from the next line on (see _start_thread)
                # Waits for a request and takes the GIL back ahead of a busy main thread.
                if not priority.wait_readable(conn.fileno(), SEND_TIMEOUT):
                    continue
                # The main thread makes way while recv gives the GIL up and, until the hello
                # is answered, while the hooks' set-up and the reply's send do (priority.py).
                handshake = priority.Urgent(HANDSHAKE_PAUSE if not attached else 0.05)
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    handshake.end()
                    continue
                if attached:
                    handshake.end()
                    handshake = None
                if not chunk:
                    return
                buf += chunk
                # Each system call here gives the GIL up; while the program's threads are busy,
                # taking it back waits a whole switch interval (5 ms): ask for a shorter one.
                # Behind an event loop whose iterations are shorter than that interval it would
                # wait seconds (each select(0) restarts CPython's clock): the main thread makes
                # way while the request is served, except while the agent waits for the loop's
                # own work (loops.call_in_loop pauses the section; priority.py).
                with (
                    switching.shorter_switch_interval(REQUEST_SWITCH_INTERVAL),
                    _serving_urgently(),
                ):
                    lines = buf.split(b"\n")  # one pass: a chunk of tiny requests stays linear
                    buf = lines.pop()
                    out = _Replies(conn, self)
                    for line in lines:
                        if len(line) > protocol.MAX_REQUEST_BYTES:
                            out.add(protocol.error(None, "bad_request", "request line too long"))
                            out.flush()
                            return
                        if not line.strip():
                            continue
                        reply, close = self._handle(line, attached, session, peer)
                        if reply.get("ok") and reply.get("_hello"):
                            reply.pop("_hello")
                            if not attached:
                                self.collector.attach()
                                attached = True
                                session = Session()
                                self.collector.steps.sinks.append(session.pending)
                        out.add(reply)
                        if close:
                            out.flush()
                            return
                        if handshake is not None and attached:
                            out.flush()  # the hello's reply, before any request that
                            handshake.end()  # may wait for the loop (call_in_loop)
                            handshake = None
                    out.flush()  # replies to one chunk go out in few sends, not one per request
                if handshake is not None:
                    handshake.end()  # a hello not complete in this chunk: the next waits again
                    handshake = None
                if len(buf) > protocol.MAX_REQUEST_BYTES:
                    self._send(conn, protocol.error(None, "bad_request", "request line too long"))
                    return
        except (OSError, ValueError):
            return  # client vanished or stopped reading: drop it, never block the target
        finally:
            if handshake is not None:
                handshake.end()
            if self._jobs is not None:
                with contextlib.suppress(Exception):
                    self._jobs.client_left(id(session))  # its jobs would be orphans
            # The hooks come out under the collector's lock, and taking them out gives the GIL
            # up (a lag probe's cancel writes to the loop's pipe): a thread starved there
            # would hold the lock, and the next client's hello, for seconds.
            with priority.urgent(HANDSHAKE_PAUSE):
                if session is not None:
                    sinks = self.collector.steps.sinks
                    sinks[:] = [s for s in sinks if s is not session.pending]
                if attached:
                    self.collector.detach()
                with self._lock:
                    self.connections.discard(conn)
                with contextlib.suppress(OSError):
                    conn.close()

    def _send(self, conn: socket.socket, message: dict[str, Any]) -> None:
        data = protocol.encode(message)
        try:
            send_all(conn, data)
        except TimeoutError:
            self.collector.dropped_frames += 1
            raise

    def _handle(
        self, line: bytes, attached: bool, session: Session | None, peer: str
    ) -> tuple[dict[str, Any], bool]:
        """(reply, close the connection afterwards)."""
        req_id: Any = None
        try:
            req_id, op, args = protocol.parse_request(line)
            if op == "hello":
                version = args.get("protocol")
                if version != protocol.PROTOCOL_VERSION:
                    msg = (
                        f"client speaks protocol {version!r}, agent speaks "
                        f"{protocol.PROTOCOL_VERSION} (vmtop {__version__}): install matching versions"
                    )
                    return protocol.error(req_id, "version", msg), True
                reply = protocol.ok(
                    req_id,
                    {
                        "protocol": protocol.PROTOCOL_VERSION,
                        "agent": __version__,
                        "pid": os.getpid(),
                        "ops": list(protocol.OPS),
                    },
                )
                reply["_hello"] = True
                return reply, False
            if not attached or session is None:
                return protocol.error(req_id, "bad_request", "send hello first"), False
            if op == "bye":
                return protocol.ok(req_id, {}), True
            if op == "snapshot":
                try:
                    sreq = SnapshotRequest.from_args(args)
                except ValueError as exc:
                    return protocol.error(req_id, "bad_request", str(exc)), False
                snap = take_snapshot(self.collector, session, sreq)
                return protocol.ok(req_id, snap.to_dict()), False
            if op.startswith("job_"):  # the job ops of protocol.OPS (JobManager.handle)
                return protocol.ok(req_id, self.jobs.handle(op, args, id(session))), False
            if op in ("detail", "cancel"):
                key = args.get("key")
                if not isinstance(key, str) or len(key) > 64:
                    return protocol.error(
                        req_id, "bad_request", "'key' must be a process key string"
                    ), False
                if op == "detail":
                    return protocol.ok(req_id, detail(self.collector, key)), False
                return protocol.ok(req_id, cancel(self.collector, key, peer)), False
            return protocol.error(req_id, "unknown_op", f"unknown op {op!r}"), False
        except protocol.ProtocolError as exc:
            return protocol.error(
                req_id if req_id is not None else exc.req_id, exc.code, str(exc)
            ), False
        except NotFound as exc:
            return protocol.error(req_id, "not_found", str(exc)), False
        except LoopTimeout as exc:
            return protocol.error(req_id, "timeout", str(exc)), False
        except Exception as exc:  # never into the program: report and carry on
            log.debug("vmtop agent: internal error", exc_info=True)
            return protocol.error(req_id, "internal", f"{type(exc).__name__}: {exc}"[:300]), False


def _start_thread(name: str, run: Callable[[threading.Event], None]) -> AgentThread:
    """Start an agent thread and return once it waits in ``priority.wait_readable``.

    It is started while the main thread makes way (the bootstrap's import, the accept), and
    that wait takes the GIL back ahead of a busy main thread; but a thread let go before it
    gets there waits for the GIL the ordinary way, which behind a loop of 1-2 ms steps took
    0.5-8 s for 1 first hello in 10 (docs/benchmarks.md). ``run`` sets the event just before
    that wait; the few bytecodes between take microseconds.
    """
    ready = threading.Event()

    def body() -> None:
        try:
            run(ready)
        finally:
            ready.set()  # it ended without waiting (stopped meanwhile)

    thread = AgentThread(name, body)
    thread.start()
    ready.wait(THREAD_READY_WAIT)
    return thread


class _Replies:
    """Replies to the requests of one received chunk, sent in a few ``sendall`` calls: a
    client that pipelines many small requests costs a few syscalls (and GIL hand-offs) per
    chunk instead of one per request. At most ``FLUSH_BYTES`` (plus one reply) are held."""

    def __init__(self, conn: socket.socket, server: Server) -> None:
        self.conn = conn
        self.server = server
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, message: dict[str, Any]) -> None:
        data = protocol.encode(message)
        self.parts.append(data)
        self.size += len(data)
        if self.size >= FLUSH_BYTES or len(data) >= BATCH_BELOW:
            self.flush()  # a big reply goes at once: batching is for the small ones

    def flush(self) -> None:
        if not self.parts:
            return
        data, frames = b"".join(self.parts), len(self.parts)
        self.parts.clear()
        self.size = 0
        try:
            send_all(self.conn, data)
        except TimeoutError:  # the client stopped reading: drop these replies and the client
            self.server.collector.dropped_frames += frames
            raise


_urgent_serving = threading.Lock()


@contextlib.contextmanager
def _serving_urgently() -> Iterator[None]:
    """An urgent section of ``REQUEST_URGENT_LIMIT`` for one chunk of requests, for one
    client thread at a time: sections of several clients would join into one long episode
    in which the main thread stays parked (20 vanishing clients: 0.17 s of loop lag)."""
    if not _urgent_serving.acquire(blocking=False):
        yield  # another client's chunk is being served urgently: this one the ordinary way
        return
    try:
        with priority.urgent(REQUEST_URGENT_LIMIT):
            yield
    finally:
        _urgent_serving.release()


def send_all(conn: socket.socket, data: bytes, timeout: float = SEND_TIMEOUT) -> None:
    """``conn.sendall(data)``, TimeoutError after ``timeout``. Each send is tried without
    waiting (a short GIL release, which the request's urgent section makes cheap); a client
    that does not read is waited for with the section paused, so the program runs as if
    alone meanwhile, and the GIL is taken back ahead of its loop once the client reads."""
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    conn.setblocking(False)
    try:
        while view:
            try:
                sent = conn.send(view)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the client stopped reading") from None
                with priority.paused():
                    priority.wait_writable(conn.fileno(), left)
                continue
            view = view[sent:]
    finally:
        conn.settimeout(SEND_TIMEOUT)


__all__ = ["Server", "asdict", "peer_credentials", "send_all"]
