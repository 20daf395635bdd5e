"""Shorter GIL switch intervals, asked for by several users at once and given back exactly.

A thread that needs the GIL while another runs pure Python waits ``sys.getswitchinterval()``
(5 ms by default) each time it blocks and comes back: a sampler ticking at 100 Hz, or an agent
answering a request with a few hundred system calls, then falls far behind. Each user asks
for an interval with :func:`shorter_switch_interval`; the shortest one asked for applies while
any is active, and the program's own value comes back when the last one ends. If the program
sets an interval itself meanwhile, its value wins and is never overwritten.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_active: dict[int, float] = {}
_tokens = itertools.count()
_baseline: float | None = None  # the program's interval before the first request
_applied: float | None = None  # what we set last (None: we have not touched it)


def _set(interval: float) -> float:
    """Set and return what took: CPython keeps whole microseconds, truncating (a value read
    back and set again would lose one), so aim half a microsecond up."""
    sys.setswitchinterval(interval + 5e-7)
    return sys.getswitchinterval()


def _apply() -> None:
    global _applied
    assert _baseline is not None
    want = min(min(_active.values()), _baseline)
    current = sys.getswitchinterval()
    if _applied is not None and abs(current - _applied) > 1e-9:
        return  # the program changed it: leave it alone
    _applied = _set(want) if abs(current - want) > 1e-9 else current


def push(interval: float) -> int:
    """Ask for ``interval`` seconds (or shorter) until :func:`pop` of the returned token."""
    global _baseline
    with _lock:
        token = next(_tokens)
        if not _active:
            _baseline = sys.getswitchinterval()
        _active[token] = interval
        _apply()
        return token


def pop(token: int) -> None:
    global _baseline, _applied
    with _lock:
        if _active.pop(token, None) is None:
            return
        if _active:
            _apply()
            return
        current = sys.getswitchinterval()
        if _baseline is not None and _applied is not None and abs(current - _applied) <= 1e-9:
            _set(_baseline)
        _baseline = _applied = None


@contextmanager
def shorter_switch_interval(interval: float) -> Iterator[None]:
    token = push(interval)
    try:
        yield
    finally:
        pop(token)
