"""The target-facing side of the TUI: a thread that fetches snapshots, never the UI thread.

``SnapshotReader`` asks the source for a snapshot every interval (at once when the user
changes the sort, the filter or the kinds), then posts :class:`SnapshotFetched` with the
immutable :class:`~vmtop.records.Snapshot` to the app; widgets react to that message. When
the target exits or the connection drops it posts :class:`TargetLost` and stops.

A *source* is anything with ``snapshot(**kwargs)``, ``detail(key)``, ``cancel(key)`` and
``close()`` (:class:`Source`): :class:`vmtop.client.AgentClient`, a fleet of them, the read-only
peek source, or recorded data. What else a source can do it says by a protocol of its own, never
by its class: :class:`JobSource` (its target runs profiling jobs), :class:`ReadOnlySource` (it
only looks). :class:`LockedSource` lets the reader and the detail/cancel workers share one
connection.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Protocol, runtime_checkable

from textual.message import Message
from textual.message_pump import MessagePump

from vmtop.client import ClientError, TargetGone
from vmtop.records import Snapshot
from vmtop.tui.viewmodel import Request

RETRIES = 3  # consecutive failed snapshots (not a lost target) before giving up


class Source(Protocol):
    """What the TUI reads from: the keywords of ``snapshot`` are :meth:`Request.kwargs`."""

    def snapshot(
        self,
        *,
        sort: str = ...,
        limit: int = ...,
        filter: str = ...,
        accumulate: bool = ...,
        kinds: tuple[str, ...] = ...,
        groups: int = ...,
    ) -> Snapshot: ...

    def detail(self, key: str) -> dict[str, Any]: ...

    def cancel(self, key: str) -> dict[str, Any]: ...

    def close(self) -> None: ...


@runtime_checkable
class JobSource(Protocol):
    """A source whose target runs profiling jobs (an agent). ``job_connection`` opens a second
    connection for one job, so the table keeps refreshing while the target is measured."""

    def job_connection(self, timeout: float) -> Any: ...


@runtime_checkable
class ReadOnlySource(Protocol):
    """A source that only looks at the target (peek); the status line shows its note."""

    read_only_note: str


class SnapshotFetched(Message):
    """A new snapshot, with the request it answers and the seconds the fetch took."""

    def __init__(self, snapshot: Snapshot, request: Request, elapsed: float) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.request = request
        self.elapsed = elapsed


class FetchFailed(Message):
    """One snapshot failed but the target is still there (e.g. a slow answer)."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class TargetLost(Message):
    """The target exited or the connection dropped: no more snapshots will come."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class LockedSource:
    """One source, used from several threads one call at a time."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.lock = threading.Lock()
        self.closed = False

    def snapshot(self, request: Request) -> Snapshot:
        with self.lock:
            self._check()
            snap = self.source.snapshot(**request.kwargs())
        if not isinstance(snap, Snapshot):
            raise ClientError(f"the source returned {type(snap).__name__}, not a Snapshot")
        return snap

    def detail(self, key: str) -> dict[str, Any]:
        with self.lock:
            self._check()
            return dict(self.source.detail(key))

    def cancel(self, key: str) -> dict[str, Any]:
        with self.lock:
            self._check()
            return dict(self.source.cancel(key))

    def _check(self) -> None:
        if self.closed:
            raise ClientError("detached")

    def close(self, wait: float = 2.0) -> None:
        """Detach: wait (bounded) for a call in flight, then close the source."""
        if self.closed:
            return
        self.closed = True
        got = self.lock.acquire(timeout=wait)
        try:
            with contextlib.suppress(Exception):
                self.source.close()
        finally:
            if got:
                self.lock.release()


class SnapshotReader:
    """Fetches snapshots on its own daemon thread and posts them to ``target``."""

    def __init__(
        self, target: MessagePump, source: LockedSource, request: Request, interval: float
    ) -> None:
        self.target = target
        self.source = source
        self.request = request
        self.interval = interval
        self.paused = False
        self.fetches = 0
        self._cond = threading.Condition()
        self._wake = True  # the first snapshot is fetched at once (see start)
        self._due = 0.0
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="vmtop-tui-reader", daemon=True)

    def start(self, now: bool = True) -> None:
        """Start fetching: the first snapshot at once, or one interval from now when the
        caller already has it (``now=False``)."""
        self._wake = now
        self._due = 0.0 if now else time.monotonic() + self.interval
        self._thread.start()

    def update(
        self,
        request: Request | None = None,
        interval: float | None = None,
        paused: bool | None = None,
        now: bool = False,
    ) -> None:
        """Change what the next fetch asks for; ``now`` fetches without waiting."""
        with self._cond:
            if request is not None:
                self.request = request
            if interval is not None:
                self.interval = interval
            if paused is not None:
                self.paused = paused
            self._wake = self._wake or now
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _next(self, due: float) -> Request | None:
        """Block until a fetch is due (or forced); None when stopped."""
        with self._cond:
            while True:
                if self._stopped:
                    return None
                wait = due - time.monotonic()
                if not self.paused and (self._wake or wait <= 0):
                    self._wake = False
                    return self.request
                self._cond.wait(None if self.paused else wait)

    def _run(self) -> None:
        due = self._due
        failures = 0
        while (request := self._next(due)) is not None:
            t0 = time.perf_counter()
            try:
                snap = self.source.snapshot(request)
            except TargetGone as exc:
                self._lost(str(exc))
                return
            except ClientError as exc:
                if self.source.closed:
                    return
                failures += 1
                if failures >= RETRIES:
                    self._lost(f"{exc} ({failures} times in a row)")
                    return
                self.target.post_message(FetchFailed(str(exc)))
            except Exception as exc:  # a broken source must end in a banner, not a traceback
                self._lost(f"{type(exc).__name__}: {exc}")
                return
            else:
                failures = 0
                self.fetches += 1
                self.target.post_message(SnapshotFetched(snap, request, time.perf_counter() - t0))
            due = time.monotonic() + self.interval

    def _lost(self, reason: str) -> None:
        if not self._stopped and not self.source.closed:
            self.target.post_message(TargetLost(reason))
