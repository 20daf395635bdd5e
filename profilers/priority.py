"""Waits for the agent's threads that get the GIL back ahead of a busy main thread.

An event loop whose steps last a millisecond or two releases and retakes the GIL at every
``select(0)``; CPython's ``take_gil`` then never asks it to let go, and a thread returning
from a blocking call waits seconds (docs/attach.md, "Hello latency"). The C helper
``_priority`` (built at install) waits without the GIL and, to take it back, queues a pending
call that makes the main thread give it up at its next eval-breaker check. Without the helper
these are ordinary waits.

- :func:`wait_readable` — wait for a descriptor, then take the GIL back first.
- :func:`sleep` — sleep, then take the GIL back first: the main thread is parked at an
  eval-breaker check in its Python code while the caller holds the GIL (the sampler's ticks).
- :func:`urgent` — a short section (an accept, a thread start, a hello, serving a request)
  in which the main thread makes way at each of its checks. Never around a wait for the main
  thread's own work: such a wait goes inside :func:`paused` (the section is suspended, the
  main thread runs at full speed, and the section resumes once the wait is over).
- :func:`wait_future` — wait for a ``concurrent.futures.Future`` that another thread (an
  event loop's) completes, and take the GIL back first (``Future.result`` would wait for
  the GIL the ordinary way: seconds behind a loop whose iterations are shorter than the
  switch interval).

The main thread makes way for at most 50 ms per episode (``urgent(limit)`` may ask for
longer): a thread that waits inside such a section for something the main thread holds (a
lock it took, a module it is importing) gets it at the latest then, the ordinary way.
"""

from __future__ import annotations

import concurrent.futures
import os
import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

try:
    from profilers import _priority
except ImportError:  # built without a C compiler
    _priority = None  # type: ignore[assignment]


def available() -> bool:
    return _priority is not None


def wait_readable(fd: int, timeout: float | None) -> bool:
    """True when ``fd`` is readable (or closed/errored), False after ``timeout`` seconds."""
    if _priority is not None:
        return bool(_priority.wait(fd, select.POLLIN, timeout))
    readable, _, _ = select.select([fd], [], [], timeout)
    return bool(readable)


def wait_writable(fd: int, timeout: float | None) -> bool:
    """True when ``fd`` is writable (or closed/errored), False after ``timeout`` seconds."""
    if _priority is not None:
        return bool(_priority.wait(fd, select.POLLOUT, timeout))
    _, writable, _ = select.select([], [fd], [], timeout)
    return bool(writable)


def sleep(seconds: float) -> None:
    """``time.sleep``, but the GIL comes back ahead of a busy main thread (see the module)."""
    if _priority is not None:
        _priority.sleep(seconds)
    else:
        time.sleep(seconds)


class Urgent:
    """``begin()`` now, ``end()`` once (idempotent): see :func:`urgent`. The main thread
    makes way for at most ``limit`` seconds in all (then the GIL goes the ordinary way).
    :func:`paused` suspends every section of the calling thread and resumes it after; the
    time a section was on counts against its ``limit`` across pauses, so a thread with much
    work of its own between its waits (many big replies in a row) cannot park the main
    thread for longer than that."""

    def __init__(self, limit: float = 0.05) -> None:
        self.limit = limit
        self.active = False
        self.ended = False
        self._used = 0.0
        self._since = 0.0
        if _priority is not None:
            self.active = True
            self._since = time.monotonic()
            _priority.begin(limit)
            _sections().append(self)

    def end(self) -> None:
        self.ended = True
        self._suspend()
        sections = _sections()
        if self in sections:
            sections.remove(self)

    def _suspend(self) -> None:
        if self.active:
            self.active = False
            self._used += time.monotonic() - self._since
            _priority.end()

    def _resume(self) -> None:
        """Begin again after :func:`paused`, for what is left of ``limit``."""
        left = self.limit - self._used
        if not self.active and not self.ended and _priority is not None and left > 0:
            self.active = True
            self._since = time.monotonic()
            _priority.begin(left)


_local = threading.local()  # the calling thread's urgent sections


def _sections() -> list[Urgent]:
    sections: list[Urgent] | None = getattr(_local, "sections", None)
    if sections is None:
        sections = _local.sections = []
    return sections


@contextmanager
def urgent(limit: float = 0.05) -> Iterator[None]:
    section = Urgent(limit)
    try:
        yield
    finally:
        section.end()


@contextmanager
def paused() -> Iterator[None]:
    """Inside :func:`urgent` (or while an :class:`Urgent` of this thread is on): the main
    thread runs freely until the block ends (a wait for its own work), then the sections go
    on. Outside one: nothing."""
    suspended = [section for section in _sections() if section.active]
    for section in suspended:
        section._suspend()
    try:
        yield
    finally:
        for section in suspended:
            section._resume()


class _EventFd:
    """An eventfd for one wait. The waiter closes it when its wait is over (answered or
    given up); a ``set()`` that comes later (a callback that ran after a timeout) finds it
    closed and writes nothing, so a descriptor number reused meanwhile is never written."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._lock = threading.Lock()
        self._closed = False

    def set(self) -> None:
        with self._lock:
            if not self._closed:
                _priority.notify(self.fd)  # keeps the GIL: no thread runs in the loop's place

    def drain(self) -> None:
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.fd)

    def __del__(self) -> None:
        self.close()


def waker() -> Any:
    """A waker for one :func:`wait_future` (``None`` without the C helper): the thread that
    completes the future calls ``.set()`` on it after setting the result; :func:`wait_future`
    closes it (not the garbage collector: a traceback that keeps a frame alive would keep its
    descriptor open)."""
    if _priority is None or not hasattr(os, "eventfd"):
        return None
    return _EventFd()


def wait_future(future: concurrent.futures.Future[T], wake: Any, timeout: float) -> T:
    """``future.result(timeout)``, but the GIL comes back ahead of a busy main thread.
    ``wake`` is :func:`waker`'s object (``None``: an ordinary wait), closed on the way out;
    inside :func:`urgent` the wait is :func:`paused`."""
    if wake is None:
        return future.result(timeout)
    try:
        deadline = time.monotonic() + timeout
        while not future.done():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with paused():
                woken = wait_readable(wake.fd, left)
            if woken:
                wake.drain()
    finally:
        wake.close()
    return future.result(0)


def stats() -> dict[str, int]:
    """``yields`` the main thread made and ``priority`` takes of the GIL (0s without C)."""
    return dict(_priority.stats()) if _priority is not None else {"yields": 0, "priority": 0}


__all__ = [
    "Urgent",
    "available",
    "paused",
    "sleep",
    "stats",
    "urgent",
    "wait_future",
    "wait_readable",
    "wait_writable",
    "waker",
]
