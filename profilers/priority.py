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
    makes way for at most ``limit`` seconds in all (then the GIL goes the ordinary way)."""

    def __init__(self, limit: float = 0.05) -> None:
        self.limit = limit
        self.active = _priority is not None
        if self.active:
            _priority.begin(limit)

    def end(self) -> None:
        if self.active:
            self.active = False
            _priority.end()

    def resume(self) -> None:
        """Begin again after :meth:`end` (a new episode of at most ``limit`` seconds)."""
        if not self.active and _priority is not None:
            self.active = True
            _priority.begin(self.limit)


_local = threading.local()  # the calling thread's innermost urgent() section


@contextmanager
def urgent(limit: float = 0.05) -> Iterator[None]:
    section = Urgent(limit)
    outer = getattr(_local, "section", None)
    _local.section = section
    try:
        yield
    finally:
        section.end()
        _local.section = outer


@contextmanager
def paused() -> Iterator[None]:
    """Inside :func:`urgent`: the main thread runs freely until the block ends (a wait for
    its own work), then the section goes on. Outside one: nothing."""
    section: Urgent | None = getattr(_local, "section", None)
    if section is None or not section.active:
        yield
        return
    section.end()
    try:
        yield
    finally:
        section.resume()


class _EventFd:
    """An eventfd for one wait: closed once nobody holds it (the waiter has its answer or
    gave up, and no callback that may still set it is pending), so it is never written
    after it was closed."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)

    def set(self) -> None:
        _priority.notify(self.fd)  # keeps the GIL: no other thread runs in the loop's place

    def drain(self) -> None:
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass

    def __del__(self) -> None:
        os.close(self.fd)


def waker() -> Any:
    """A waker for one :func:`wait_future` (``None`` without the C helper): the thread that
    completes the future calls ``.set()`` on it after setting the result, and holds it until
    then; its descriptor is closed when the last holder lets it go."""
    if _priority is None or not hasattr(os, "eventfd"):
        return None
    return _EventFd()


def wait_future(future: concurrent.futures.Future[T], wake: Any, timeout: float) -> T:
    """``future.result(timeout)``, but the GIL comes back ahead of a busy main thread.
    ``wake`` is :func:`waker`'s object (``None``: an ordinary wait); inside :func:`urgent`
    the wait is :func:`paused`."""
    if wake is None:
        return future.result(timeout)
    deadline = time.monotonic() + timeout
    while not future.done():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        with paused():
            woken = wait_readable(wake.fd, left)
        if woken:
            wake.drain()
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
