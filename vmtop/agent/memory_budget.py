"""Memory estimates of tasks under a time budget: what a refresh may spend on them.

An estimate walks a task's frames and what they hold (:mod:`vmtop.agent.memory`): 0.1-0.5 ms
each. Estimating every shown row on every refresh held a web service's loop 5-14 ms a second;
ranking every task by memory held it 0.2 s at 1k tasks. So estimates are cached per task
(weakly: the cache keeps no task alive) for ``MAX_AGE`` seconds, a refresh spends at most
``BUDGET`` seconds of loop time making new ones, and a row whose estimate did not fit shows
its previous one (or "–" until it has one). Sorting by memory ranks the tasks estimated so
far: the cached leaders plus a round-robin batch of the others each refresh, so at 100k
tasks the ranking converges over refreshes instead of blocking the loop.
"""

from __future__ import annotations

import heapq
import time
import weakref
from typing import Any

from vmtop.agent import tasks as task_info
from vmtop.agent.memory import estimate

BUDGET = 0.003  # seconds of loop time a refresh spends on new estimates
MAX_AGE = 5.0  # seconds a task's estimate is reused
KEEP = 2000  # estimates kept for ranking (the largest)


class MemoryBudget:
    """Per-agent cache of task memory estimates (on the loop thread)."""

    def __init__(self) -> None:
        self.cache: weakref.WeakKeyDictionary[Any, tuple[float, int]] = weakref.WeakKeyDictionary()
        self.cursor = 0
        self.deadline = 0.0

    def start(self) -> None:
        """A refresh begins: its budget starts now."""
        self.deadline = time.perf_counter() + BUDGET

    def of(
        self, task: Any, frames: list[Any] | None = None, roots: list[Any] | None = None
    ) -> int | None:
        """The task's estimate: cached when fresh, new while the budget lasts."""
        now = time.perf_counter()
        cached = self.cache.get(task)
        if cached is not None and now - cached[0] < MAX_AGE:
            return cached[1]
        if now > self.deadline:
            return cached[1] if cached is not None else None
        try:
            if frames is None:
                frames = task_info.chain_frames(task)
            value = estimate(roots or [], frames)
        except Exception:
            return cached[1] if cached is not None else None
        self.cache[task] = (now, value)
        return value

    def leaders(self, refs: list[Any], mine: Any, limit: int) -> list[Any]:
        """Top tasks by memory: refresh a round-robin batch of ``refs`` (weak references to
        every task) within the budget, then rank what is cached."""
        n = len(refs)
        if n:
            start = self.cursor % n
            i = start
            while time.perf_counter() < self.deadline and i < start + n:
                task = refs[i % n]()
                i += 1
                if task is not None and mine(task):
                    self.of(task)
            self.cursor = i
        ranked = heapq.nlargest(
            KEEP, ((v[1], id(t), t) for t, v in list(self.cache.items()) if mine(t))
        )
        if len(self.cache) > KEEP:
            keep = {id(t) for _, _, t in ranked}
            for t in [t for t in list(self.cache) if id(t) not in keep]:
                self.cache.pop(t, None)
        return [t for _, _, t in ranked[:limit]]

    def clear(self) -> None:
        self.cache.clear()
