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
- :func:`urgent` — a short section (an accept, a thread start, a hello) in which the main
  thread makes way at each of its checks. Never around a wait for the main thread's own work
  (``call_in_loop``): it would run in 5 ms slices.

The main thread makes way for at most 50 ms per episode (``urgent(limit)`` may ask for
longer): a thread that waits inside such a section for something the main thread holds (a
lock it took, a module it is importing) gets it at the latest then, the ordinary way.
"""

from __future__ import annotations

import select
import time
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
        self.active = _priority is not None
        if self.active:
            _priority.begin(limit)

    def end(self) -> None:
        if self.active:
            self.active = False
            _priority.end()


@contextmanager
def urgent(limit: float = 0.05) -> Iterator[None]:
    section = Urgent(limit)
    try:
        yield
    finally:
        section.end()


def stats() -> dict[str, int]:
    """``yields`` the main thread made and ``priority`` takes of the GIL (0s without C)."""
    return dict(_priority.stats()) if _priority is not None else {"yields": 0, "priority": 0}


__all__ = ["Urgent", "available", "sleep", "stats", "urgent", "wait_readable"]
