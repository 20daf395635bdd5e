"""Per-task counters that never keep a task alive, folded into per-coroutine groups.

The registry holds tasks only weakly: an entry is keyed by the task's ``id`` and its
:class:`PyTaskStat` is a weak reference to the task. The step that finishes a task folds its
counts into its group (one :class:`PyGroupStat` per coroutine code object) and drops the
entry; a pending task that the program lets go of (always a cycle: task <-> the future it
waits on) is freed as it would be without vmtop, and the weakref's callback folds it as
"abandoned". So a task-per-request server keeps no request alive through vmtop, whether or
not a client asks for snapshots.

``vmtop/agent/_registry.c`` is the same registry in C (used with the C hooks; it also has the
counting coroutine that makes uvloop's task steps countable). This module is the fallback
for installs without a compiler, or ``VMTOP_HOOKS=python``. Both offer:

* ``step(task, dt, end)`` / ``other(dt)``: what the step hooks call (C: done in C);
* ``take()`` -> ``([(stat, steps, secs), ...], [n, secs])``: the stats that stepped since the
  previous take, so a refresh costs O(tasks that ran), not O(tasks alive);
* ``stat(task)``, ``top(n, by)``, ``group_list()``, ``clear()``, ``live()``;
* counters ``created``, ``adopted`` (older than the attach), ``finished``, ``abandoned``.

A stat's ``task`` is the task while it is pending, else None. A group's lifetime histogram
has ``BUCKETS`` buckets, ``BUCKETS_PER_DECADE`` a decade from 1 µs: bucket i holds
lifetimes in [1 µs * 10^(i/8), 1 µs * 10^((i+1)/8)).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from time import perf_counter
from typing import Any

BUCKETS = 80
BUCKETS_PER_DECADE = 8
MAX_GROUPS = 2000


class PyGroupStat:
    __slots__ = (
        "code",
        "live",
        "started",
        "adopted",
        "finished",
        "cancelled",
        "failed",
        "abandoned",
        "steps",
        "secs",
        "_hist",
    )

    def __init__(self, code: Any) -> None:
        self.code = code
        self.live = self.started = self.adopted = self.finished = 0
        self.cancelled = self.failed = self.abandoned = self.steps = 0
        self.secs = 0.0
        self._hist = [0] * BUCKETS

    @property
    def hist(self) -> tuple[int, ...]:
        return tuple(self._hist)


class PyTaskStat:
    __slots__ = (
        "_ref",
        "key",
        "group",
        "steps",
        "secs",
        "created",
        "last",
        "epoch",
        "win",
        "finished",
        "__weakref__",
    )

    def __init__(self, task: Any, callback: Any, group: PyGroupStat, created: float) -> None:
        stat = weakref.ref(self)

        def gone(_ref: Any) -> None:  # gets the stat (weakly: it may be gone first)
            callback(stat())

        self._ref = weakref.ref(task, gone)
        self.key = id(task)
        self.group = group
        self.steps = 0
        self.secs = 0.0
        self.created = created
        self.last = math.nan
        self.epoch = 0
        self.win = [0, 0.0]
        self.finished = 0

    @property
    def task(self) -> Any:
        return None if self.finished else self._ref()


def bucket(lifetime: float) -> int:
    if lifetime <= 1e-6:
        return 0
    i = int(math.floor(math.log10(lifetime * 1e6) * BUCKETS_PER_DECADE))
    return min(max(i, 0), BUCKETS - 1)


def _code_of(coro: Any) -> Any:
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    return code if code is not None else type(coro)


def _outcome(task: Any) -> str | None:
    """How a task that is no longer pending ended (None while pending), with no side effect:
    ``Future.exception()`` would mark the exception as retrieved."""
    state = task._state
    if state == "PENDING":
        return None
    if state == "CANCELLED":
        return "cancelled"
    return "failed" if task._exception is not None else "ok"


class PyRegistry:
    def __init__(self, cancelled_error: type[BaseException], max_groups: int = MAX_GROUPS) -> None:
        self.entries: dict[Any, PyTaskStat] = {}
        self.groups: dict[Any, PyGroupStat] = {}
        # Stats that stepped since the last take() (a dict, so a finished task leaves it at
        # once: a client that never asks must not keep one entry per finished task).
        self.window: dict[PyTaskStat, None] = {}
        self.epoch = 1
        self.other_pair = [0, 0.0]
        self.created = self.adopted = self.finished = self.abandoned = 0
        self._other_group = PyGroupStat(None)
        self._max_groups = max_groups
        self._cancelled_error = cancelled_error

    # -- counting ---------------------------------------------------------------------------
    def group_for_coro(self, coro: Any) -> PyGroupStat:
        code = _code_of(coro)
        g = self.groups.get(code)
        if g is None:
            if len(self.groups) >= self._max_groups:
                return self._other_group
            g = self.groups[code] = PyGroupStat(code)
        return g

    def stat_for(self, task: Any, created: float = math.nan) -> PyTaskStat:
        s = self.entries.get(id(task))
        if s is not None:
            return s
        s = PyTaskStat(task, self._gone, self.group_for_coro(task.get_coro()), created)
        self.entries[s.key] = s
        g = s.group
        g.live += 1
        if math.isnan(created):
            g.adopted += 1
            self.adopted += 1
        else:
            g.started += 1
            self.created += 1
        return s

    def count(self, s: PyTaskStat, steps: int, dt: float, end: float) -> None:
        s.steps += steps
        s.secs += dt
        s.last = end
        g = s.group
        g.steps += steps
        g.secs += dt
        if s.finished:
            return
        if s.epoch != self.epoch:
            s.epoch = self.epoch
            s.win = [0, 0.0]
            self.window[s] = None
        win = s.win
        win[0] += steps
        win[1] += dt

    def finish(self, s: PyTaskStat, how: str, end: float) -> None:
        if s.finished:
            return
        s.finished = 1
        self.window.pop(s, None)
        g = s.group
        g.live -= 1
        if how == "abandoned":
            g.abandoned += 1
            self.abandoned += 1
        else:
            g.finished += 1
            self.finished += 1
            if how == "cancelled":
                g.cancelled += 1
            elif how == "failed":
                g.failed += 1
            if not math.isnan(s.created):
                g._hist[bucket(end - s.created)] += 1
        if self.entries.get(s.key) is s:
            del self.entries[s.key]

    def _gone(self, s: PyTaskStat | None) -> None:
        if s is not None:
            self.finish(s, "abandoned", perf_counter())

    def step(self, task: Any, dt: float, end: float) -> None:
        s = self.stat_for(task)
        self.count(s, 1, dt, end)
        how = _outcome(task)
        if how is not None:
            self.finish(s, how, end)

    def other(self, dt: float) -> None:
        pair = self.other_pair
        pair[0] += 1
        pair[1] += dt

    # -- reading ----------------------------------------------------------------------------
    def take(self) -> tuple[list[tuple[PyTaskStat, int, float]], list[float]]:
        window, self.window = self.window, {}
        self.epoch += 1
        other, self.other_pair = self.other_pair, [0, 0.0]
        return [(s, int(s.win[0]), s.win[1]) for s in window], other

    def stat(self, task: Any) -> PyTaskStat | None:
        return self.entries.get(id(task))

    def add(self, task: Any, steps: int, seconds: float) -> None:
        self.count(self.stat_for(task), steps, seconds, perf_counter())

    def top(self, n: int, by: int) -> list[PyTaskStat]:
        import heapq

        key: Callable[[PyTaskStat], float] = (
            (lambda s: s.secs) if by else (lambda s: float(s.steps))
        )
        live = [s for s in list(self.entries.values()) if not s.finished]
        return heapq.nlargest(n, live, key=key)

    def group_list(self) -> list[PyGroupStat]:
        out = list(self.groups.values())
        if self._other_group.started or self._other_group.adopted:
            out.append(self._other_group)
        return out

    def clear(self) -> None:
        for s in list(self.entries.values()):
            s.finished = 1  # no longer counted, nor folded
        self.entries.clear()

    def live(self) -> int:
        return len(self.entries)


def py_task_factory(registry: PyRegistry, original: Any, task_type: Any) -> Any:
    """A loop's task factory that registers each task with its creation time (Python)."""

    def factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
        t0 = perf_counter()
        if original is None:
            task = task_type(coro, loop=loop, **kwargs)
        else:
            task = original(loop, coro, **kwargs)
        end = perf_counter()
        s = registry.stat_for(task, t0)
        started = getattr(coro, "cr_suspended", False) or getattr(coro, "cr_frame", 0) is None
        if started:  # the first step ran inside the factory (an eager task factory)
            registry.count(s, 1, end - t0, end)
            how = _outcome(task)
            if how is not None:
                registry.finish(s, how, end)
        return task

    factory._vmtop_original = original  # type: ignore[attr-defined]
    factory.wraps = 0  # type: ignore[attr-defined]
    return factory
