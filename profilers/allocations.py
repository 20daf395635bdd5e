"""``vmtop.allocations``: where memory was allocated by one call or one ``with`` block.

::

    m = allocations(fn, *args, **kwargs)        # runs fn now; m.return_value is its result
    m = allocations(fn, *args, nframe=5)        # frames kept per allocation (default 25)
    with allocations() as m:                    # m is the report once the block exits
        ...
    async with allocations() as m:              # the same inside a coroutine
        ...
    m.top(by="count", group="function")         # also m.growth(), m.save("alloc.svg")
    allocations.diff(snapshot_a, snapshot_b)    # growth between any two tracemalloc snapshots

``tracemalloc`` is started for the measurement and stopped after it; when it was already
tracing, it is left on with its own frame limit (the report says so). Coroutine functions are
run with ``asyncio.run`` (on a fresh thread when this thread already runs a loop, as in
Jupyter). The cost: tracemalloc slows allocation-heavy code several times (see
docs/benchmarks.md); the report's analysis itself runs after the code, on first use.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any, overload

from profilers.alloc_analysis import OWN_FILES, Aggregate, Group, SiteDiff, growth
from profilers.alloc_limits import DEFAULT_NFRAME, check_nframe
from profilers.alloc_report import AllocationReport
from profilers.calling import call_now, function_name
from profilers.report import RecordingBlock

__all__ = ["AllocationRecorder", "Allocations", "allocations", "run_allocations"]


class AllocationRecorder:
    """Start/stop tracemalloc around some code and keep what the report needs.

    ``start()`` starts tracing (unless already on), takes the *before* snapshot and resets the
    peak; ``stop()`` reads peak and current traced memory, takes the *after* snapshot and stops
    tracing if ``start()`` started it. Snapshots are not traced themselves.
    """

    def __init__(self, nframe: int = DEFAULT_NFRAME, exclude: Iterable[str] = OWN_FILES) -> None:
        self.nframe = check_nframe(nframe)
        self.exclude = tuple(exclude)
        self.was_tracing = False
        self.before: tracemalloc.Snapshot | None = None
        self.after: tracemalloc.Snapshot | None = None
        self.start_traced = 0
        self.end_traced = 0
        self.peak = 0
        self.duration = 0.0
        self._t0 = 0.0
        self.running = False

    def start(self) -> None:
        if self.running:
            raise RuntimeError("this allocation recorder is already running")
        self.was_tracing = tracemalloc.is_tracing()
        if not self.was_tracing:
            tracemalloc.start(self.nframe)
        self.running = True
        self.before = tracemalloc.take_snapshot()
        tracemalloc.reset_peak()
        self.start_traced = tracemalloc.get_traced_memory()[0]
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        if not self.running:
            return
        self.duration = time.perf_counter() - self._t0
        self.running = False
        try:
            if not tracemalloc.is_tracing():  # the code stopped it: nothing left to read
                raise RuntimeError("tracemalloc was stopped by the measured code")
            self.end_traced, self.peak = tracemalloc.get_traced_memory()
            self.after = tracemalloc.take_snapshot()
        finally:
            if not self.was_tracing:
                tracemalloc.stop()

    def report(
        self, name: str, return_value: Any = None, outer: tuple[tuple[str, int], ...] = ()
    ) -> AllocationReport:
        if self.after is None:
            raise RuntimeError("the recorder has not been stopped")
        return AllocationReport(
            self.after,
            self.before,
            name=name,
            duration=self.duration,
            start_traced=self.start_traced,
            end_traced=self.end_traced,
            peak=self.peak,
            was_tracing=self.was_tracing,
            requested_nframe=self.nframe,
            return_value=return_value,
            exclude=self.exclude,
            outer=outer,
        )


def run_allocations(
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    nframe: int = DEFAULT_NFRAME,
    name: str | None = None,
    exclude: Iterable[str] = OWN_FILES,
) -> AllocationReport:
    """Run ``fn`` under tracemalloc and return the report (exceptions from ``fn`` propagate)."""
    recorder = AllocationRecorder(nframe, exclude)
    value = call_now(recorder.start, recorder.stop, fn, args, kwargs or {})
    return recorder.report(name or function_name(fn), value)


class Allocations(RecordingBlock[AllocationReport]):
    """``with vmtop.allocations() as m:`` (or ``async with``).

    ``m`` *becomes* the report when the block exits: ``m`` shows it and ``m.top()``,
    ``m.growth()``, ``m.save(...)``, ``m.peak``... work on it; ``m.report`` is the underlying
    :class:`~profilers.alloc_report.AllocationReport`.
    """

    what = "allocation report"
    label = "allocations"

    def __init__(self, nframe: int = DEFAULT_NFRAME) -> None:
        super().__init__()
        self._nframe = check_nframe(nframe)
        self._recorder: AllocationRecorder | None = None
        self._outer: tuple[tuple[str, int], ...] = ()

    def _start(self, caller: FrameType) -> None:
        # The block's callers (a REPL, a notebook kernel, a test runner) are cut from the stacks.
        outer = []
        frame = caller.f_back
        while frame is not None:
            outer.append((frame.f_code.co_filename, frame.f_lineno))
            frame = frame.f_back
        self._outer = tuple(outer)
        recorder = AllocationRecorder(self._nframe)
        recorder.start()
        self._recorder = recorder

    def _stop(self) -> AllocationReport:
        recorder, self._recorder = self._recorder, None
        assert recorder is not None
        recorder.stop()
        return recorder.report(self._where, outer=self._outer)


class _AllocationsEntry:
    """``vmtop.allocations``: call it with a function, or without one for a ``with`` block."""

    @overload
    def __call__(self, fn: None = None, /, *, nframe: int = DEFAULT_NFRAME) -> Allocations: ...

    @overload
    def __call__(
        self, fn: Callable[..., Any], /, *args: Any, nframe: int = DEFAULT_NFRAME, **kwargs: Any
    ) -> AllocationReport: ...

    def __call__(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *args: Any,
        nframe: int = DEFAULT_NFRAME,
        **kwargs: Any,
    ) -> Allocations | AllocationReport:
        """Report the memory ``fn(*args, **kwargs)`` allocates; ``nframe``: frames per trace.

        Every other keyword goes to ``fn``. Without ``fn``: a ``with``/``async with`` block.
        """
        if fn is None:
            if args or kwargs:
                raise TypeError("vmtop.allocations() without a function takes only nframe=")
            return Allocations(nframe)
        if not callable(fn):
            raise TypeError(f"vmtop.allocations needs a callable, not {type(fn).__name__}")
        return run_allocations(fn, args, kwargs, nframe=nframe)

    @staticmethod
    def diff(
        before: tracemalloc.Snapshot | Aggregate,
        after: tracemalloc.Snapshot | Aggregate,
        group: Group = "line",
    ) -> list[SiteDiff]:
        """Sites whose traced memory changed between two snapshots, most grown first."""
        return growth(before, after, group=group)

    def __repr__(self) -> str:
        return "<function vmtop.allocations(fn=None, /, *args, nframe=25, **kwargs)>"


allocations = _AllocationsEntry()
allocations.__doc__ = __doc__
