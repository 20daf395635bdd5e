"""Deterministic call counts: cProfile turned into the fprof-style :class:`CallsProfile` model.

cProfile records, per function, the calls (total and primitive, i.e. not recursive), the time
inside it including callees (cumulative, "ACC") and excluding them (inline, "OWN"), and the same
four numbers per caller -> callee edge. That is exactly what fprof's analysis shows, so the model
is the pstats dict itself (:class:`~profilers.callgraph.CallGraph` reads it).
"""

from __future__ import annotations

import cProfile
import os
import time
from collections.abc import Collection

from profilers.callgraph import PstatsDict, filter_stats


class CallsRecorder:
    """Enable/disable cProfile; segments accumulate in one profiler (like ``Profile.enable``)."""

    def __init__(self, hide_files: Collection[str] = ()) -> None:
        self.hide_files = frozenset(os.path.abspath(f) for f in hide_files)
        self.duration = 0.0
        self._profiler = cProfile.Profile()
        self._running = False
        self._started = 0.0

    def start(self, caller_frame: object = None, keep_caller: bool = False) -> None:
        if self._running:
            raise RuntimeError("this recorder is already running")
        self._running = True
        self._started = time.perf_counter()
        self._profiler.enable()

    def stop(self) -> None:
        self._profiler.disable()
        self.duration += time.perf_counter() - self._started
        self._running = False

    def stats(self) -> PstatsDict:
        """The pstats dict (what ``dump_stats`` writes), without the profiler's own entries."""
        self._profiler.create_stats()
        raw: PstatsDict = dict(self._profiler.stats)
        return filter_stats(raw, self.hide_files)
