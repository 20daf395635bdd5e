"""Garbage-collector pressure: collections, pauses and collected objects per generation.

:class:`GCWatcher` is the long-running recorder (the live agent keeps one while a client
watches)::

    w = GCWatcher(max_pauses=4096)
    w.start()            # appends one callback to gc.callbacks
    w.snapshot()         # -> GCStats, cheap (call it every second)
    w.stop()             # removes it: gc.callbacks is exactly as before

:func:`gc_pressure` measures one call or one ``with`` block and returns a
:class:`~profilers.gc_report.GCReport`::

    g = gc_pressure(fn, *args, **kwargs)
    with gc_pressure() as g:
        ...

How: CPython calls each ``gc.callbacks`` entry with ``("start", info)`` and ``("stop", info)``
around every collection, on whatever thread triggered it. Collections do not nest and do not
overlap (the collector holds the GIL and refuses to re-enter), so one start time is enough;
the callback only reads ``perf_counter``, bumps counters and appends the pause to a bounded
deque per generation, and never raises. Percentiles are computed over those recent pauses
(``max_pauses`` per generation); counts, totals and the maximum cover every collection.
"""

from __future__ import annotations

import gc
import math
import time
from collections import deque
from collections.abc import Callable
from time import perf_counter
from types import FrameType, TracebackType
from typing import Any, overload

from profilers.calling import call_now, function_name
from profilers.gc_report import GCReport
from profilers.gc_stats import GENERATIONS, GCStats, GenStats
from profilers.report import RecordingBlock

__all__ = ["GCPressure", "GCStats", "GCWatcher", "GenStats", "gc_pressure", "run_gc_pressure"]


class GCWatcher:
    """Collections, collected objects and pause times per generation, from ``gc.callbacks``.

    ``start()`` begins a new measurement (counters at zero); ``stop()`` removes the callback and
    freezes the wall clock; ``snapshot()`` works in both states.
    """

    def __init__(self, max_pauses: int = 4096) -> None:
        if max_pauses < 1:
            raise ValueError(f"max_pauses must be at least 1, not {max_pauses}")
        self.max_pauses = max_pauses
        self._reset()
        self._installed: Callable[[str, dict[str, Any]], None] | None = None

    def _reset(self) -> None:
        self._collections = [0] * GENERATIONS
        self._collected = [0] * GENERATIONS
        self._uncollectable = [0] * GENERATIONS
        self._pause_total = [0.0] * GENERATIONS
        self._pause_max = [0.0] * GENERATIONS
        self._pauses: list[deque[float]] = [
            deque(maxlen=self.max_pauses) for _ in range(GENERATIONS)
        ]
        self._t0: float | None = None  # start of the collection in progress
        self._started = time.perf_counter()
        self._stopped: float | None = None
        #: Callback invocations that failed (bad info dict, ...): never raised into the program.
        self.errors = 0

    @property
    def running(self) -> bool:
        return self._installed is not None

    def start(self) -> None:
        if self._installed is not None:
            return
        self._reset()
        callback = self._callback  # one bound-method object: removed by identity on stop()
        self._installed = callback
        gc.callbacks.append(callback)

    def stop(self) -> None:
        callback, self._installed = self._installed, None
        if callback is None:
            return
        self._stopped = time.perf_counter()
        callbacks = gc.callbacks
        for i in range(len(callbacks) - 1, -1, -1):
            if callbacks[i] is callback:
                del callbacks[i]
                break
        self._t0 = None

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside the collector, on any thread: no locks; a clock read and a few additions.
        try:
            if phase == "start":
                self._t0 = perf_counter()
                return
            t1 = perf_counter()
            gen = info["generation"]
            self._collections[gen] += 1
            self._collected[gen] += info["collected"]
            self._uncollectable[gen] += info["uncollectable"]
            t0, self._t0 = self._t0, None
            if t0 is None:  # started in the middle of this collection
                return
            pause = t1 - t0
            self._pause_total[gen] += pause
            if pause > self._pause_max[gen]:
                self._pause_max[gen] = pause
            self._pauses[gen].append(pause)
        except Exception:
            self.errors += 1

    def snapshot(self) -> GCStats:
        """Counters since ``start()``; percentiles over the last ``max_pauses`` per generation."""
        end = self._stopped if self._stopped is not None else time.perf_counter()
        wall = max(0.0, end - self._started)
        gens = []
        kept = 0
        for g in range(GENERATIONS):
            recent = sorted(_copy(self._pauses[g]))
            kept += len(recent)
            has_pause = bool(recent)
            gens.append(
                GenStats(
                    collections=self._collections[g],
                    collected=self._collected[g],
                    uncollectable=self._uncollectable[g],
                    pause_total_s=self._pause_total[g],
                    pause_max_s=self._pause_max[g] if has_pause else None,
                    pause_p50_s=_percentile(recent, 0.50),
                    pause_p99_s=_percentile(recent, 0.99),
                )
            )
        total = sum(g.pause_total_s for g in gens)
        return GCStats(
            generations=tuple(gens),
            thresholds=tuple(gc.get_threshold()),
            counts=tuple(gc.get_count()),
            gc_enabled=gc.isenabled(),
            wall_s=wall,
            gc_share=total / wall if wall > 0 else 0.0,
            pauses_kept=kept,
        )

    def __enter__(self) -> GCWatcher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _copy(pauses: deque[float]) -> list[float]:
    # A collection on another thread may append while we copy: try again (it is rare and fast).
    for _ in range(10):
        try:
            return list(pauses)
        except RuntimeError:
            continue
    return []


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (``None`` for an empty one)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


# -- one call or one block ------------------------------------------------------------------------
def run_gc_pressure(
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    name: str | None = None,
) -> GCReport:
    """Run ``fn`` with a :class:`GCWatcher` on; return a ``GCReport`` (exceptions propagate)."""
    watcher = GCWatcher()
    enabled_at_start = gc.isenabled()
    value = call_now(watcher.start, watcher.stop, fn, args, kwargs or {})
    return GCReport(
        watcher.snapshot(),
        name=name or function_name(fn),
        enabled_at_start=enabled_at_start,
        return_value=value,
    )


class GCPressure(RecordingBlock[GCReport]):
    """``with vmtop.gc_pressure() as g:`` (or ``async with``): ``g`` becomes the report."""

    what = "GC report"
    label = "gc_pressure"

    def __init__(self) -> None:
        super().__init__()
        self._watcher: GCWatcher | None = None
        self._enabled_at_start = True

    def _start(self, caller: FrameType) -> None:
        self._enabled_at_start = gc.isenabled()
        self._watcher = GCWatcher()
        self._watcher.start()

    def _stop(self) -> GCReport:
        watcher, self._watcher = self._watcher, None
        assert watcher is not None
        watcher.stop()
        return GCReport(
            watcher.snapshot(), name=self._where, enabled_at_start=self._enabled_at_start
        )


@overload
def gc_pressure(fn: None = None, /) -> GCPressure: ...


@overload
def gc_pressure(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> GCReport: ...


def gc_pressure(
    fn: Callable[..., Any] | None = None, /, *args: Any, **kwargs: Any
) -> GCPressure | GCReport:
    """GC collections, pauses and collected objects of ``fn(*args, **kwargs)`` -> ``GCReport``.

    Without ``fn``: a ``with`` / ``async with`` block whose target becomes the report.
    Coroutine functions run with ``asyncio.run``.
    """
    if fn is None:
        if args or kwargs:
            raise TypeError("vmtop.gc_pressure() without a function takes no arguments")
        return GCPressure()
    if not callable(fn):
        raise TypeError(f"vmtop.gc_pressure needs a callable, not {type(fn).__name__}")
    return run_gc_pressure(fn, args, kwargs)
