"""The in-process agent: ``vmtop.agent.start()`` makes this program observable by ``vmtop``.

It starts one daemon thread that listens on ``$XDG_RUNTIME_DIR/vmtop/<pid>.sock`` (fallback
``/tmp/vmtop-<uid>/<pid>.sock``). Nothing else happens until a client connects: hooks, lag
probes and the GC watcher exist only while a client is attached. ``start()`` is idempotent and
safe from any thread, before or after an event loop runs; errors are logged, never raised
into the program unless ``strict=True``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from pathlib import Path

from vmtop.agent.collector import Collector
from vmtop.agent.server import Server

log = logging.getLogger("vmtop.agent")

_lock = threading.Lock()
_server: Server | None = None
_collector: Collector | None = None


def start(strict: bool = False) -> Path | None:
    """Start the agent (once per process). Returns the socket path, or None if it failed."""
    global _server, _collector
    with _lock:
        if _server is not None and _server.pid == os.getpid():
            return _server.path
        collector = Collector()
        server = Server(collector)
        try:
            server.start()
        except Exception as exc:
            if strict:
                raise
            log.warning("vmtop agent not started: %s", exc)
            return None
        _server, _collector = server, collector
        return server.path


def stop() -> None:
    """Stop listening, disconnect clients, remove every hook and the socket file."""
    global _server, _collector
    with _lock:
        server, collector = _server, _collector
        _server = _collector = None
    if server is not None:
        server.stop()
    if collector is not None:
        while collector.clients:
            collector.detach()


def is_running() -> bool:
    return _server is not None and _server.pid == os.getpid()


def socket_path() -> Path | None:
    return _server.path if is_running() and _server is not None else None


def _after_fork_in_child() -> None:
    # The child inherits the listening fd and the clients' sockets but not the threads that
    # served them: close those, take the parent's clients' hooks out, forget the agent.
    global _server, _collector, _lock
    _lock = threading.Lock()  # a parent thread may have held it at the fork
    server, collector = _server, _collector
    _server = _collector = None
    if server is not None:
        server.close_in_child()
    if collector is not None and collector.clients:
        _drop_hooks_in_child(collector)


def _drop_hooks_in_child(collector: Collector) -> None:
    """The parent's clients are not the child's: the child runs without their hooks (a
    child that starts its own agent installs fresh ones on the true originals)."""
    try:
        # Locks that parent threads held at the fork would never be released here.
        collector._lock = threading.RLock()
        collector.steps._lock = threading.Lock()
        collector.mailboxes._lock = threading.Lock()
        collector.adapters._lock = threading.Lock()
        for probe in collector.probes.values():
            probe._stopped = True  # its pending timer (if this loop runs on) re-arms nothing
        collector.probes.clear()
        collector.clients = 1
        collector.detach()
    except Exception:
        log.debug("vmtop agent: could not remove hooks after fork", exc_info=True)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(stop)
