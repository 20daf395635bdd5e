"""Waits for the agent's threads that get the GIL back ahead of a busy main thread.

An event loop whose steps last a millisecond or two releases and retakes the GIL at every
``select(0)``; CPython's ``take_gil`` then never asks it to let go, and a thread returning
from a blocking call waits seconds (docs/attach.md, "Hello latency"). The C helper
``_priority`` (built at install) waits without the GIL and, to take it back, queues a pending
call that makes the main thread give it up at its next eval-breaker check. Without the helper
these are ordinary waits.

- :func:`wait_readable` — wait for a descriptor, then take the GIL back first.
- :func:`urgent` — a short section (an accept, a thread start, a hello) in which the main
  thread makes way at each of its checks. Never around a wait for the main thread's own work
  (``call_in_loop``): it would run in 5 ms slices.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager

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


class Urgent:
    """``begin()`` now, ``end()`` once (idempotent): see :func:`urgent`."""

    def __init__(self) -> None:
        self.active = _priority is not None
        if self.active:
            _priority.begin()

    def end(self) -> None:
        if self.active:
            self.active = False
            _priority.end()


@contextmanager
def urgent() -> Iterator[None]:
    section = Urgent()
    try:
        yield
    finally:
        section.end()


def stats() -> dict[str, int]:
    """``yields`` the main thread made and ``priority`` takes of the GIL (0s without C)."""
    return dict(_priority.stats()) if _priority is not None else {"yields": 0, "priority": 0}


__all__ = ["Urgent", "available", "stats", "urgent", "wait_readable"]
