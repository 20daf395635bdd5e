"""The agent's shared state: hooks, probes and trackers that live while a client is attached.

``attach()`` / ``detach()`` are reference counted: the first client installs the step hook,
the lag probes and the GC watcher; the last one to leave removes them all, so a program with
no client watching runs exactly as without vmtop.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from typing import Any

import psutil

# Imported with the agent, not at the first attach: an import on the client's thread while
# the program's loop is CPU-bound waits for the GIL at every file access (seconds, measured).
from profilers.gcwatch import GCWatcher
from vmtop.agent.adapters import Adapters
from vmtop.agent.lag import LagProbe
from vmtop.agent.loops import deref, is_uvloop, running_loops, task_count, task_refs
from vmtop.agent.mailbox import MailboxTracker
from vmtop.agent.memory_budget import MemoryBudget
from vmtop.agent.step_hooks import StepCounter

LOOP_RESCAN = 5.0  # seconds between full scans for new event loops
REFS_MAX_AGE = 5.0  # seconds a copy of the task registry's references is reused
SCAN_ALL = 5_000  # tasks looked at one by one to find loops; a sample beyond


class Collector:
    def __init__(self) -> None:
        self.steps = StepCounter()
        self.mailboxes = MailboxTracker()
        self.adapters = Adapters()  # Pykka, Trio: on while attached and imported
        self.probes: dict[int, LagProbe] = {}  # id(loop) -> probe
        self.gc: Any = None
        self.clients = 0
        self.attached_at = 0.0
        self.started_at = time.monotonic()
        self.dropped_frames = 0
        self._lock = threading.RLock()
        self._task_seq = 0
        self._task_ids: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._tasks_by_id: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
        self._process: Any = None
        self.memory = MemoryBudget()  # task memory estimates under a time budget (loop thread)
        self.scan_cursor = 0  # round-robin position of the idle-consumer scan
        self.loop_task_counts: dict[int, int] = {}
        self._loops: list[Any] = []
        self._refs: list[Any] = []
        self._refs_at = 0.0
        self._refs_count = 0
        self._loops_scanned_at = 0.0

    # -- lifecycle --------------------------------------------------------------------------
    def attach(self) -> None:
        with self._lock:
            self.clients += 1
            if self.clients > 1:
                return
            self.attached_at = time.monotonic()
            self.steps.install()
            self.mailboxes.install()
            self.refresh_loops()
            self.adapters.activate()
            self._start_gc()
            self._process = _psutil_process()

    def detach(self) -> None:
        with self._lock:
            if self.clients == 0:
                return
            self.clients -= 1
            if self.clients:
                return
            self.steps.uninstall()
            for probe in self.probes.values():
                probe.stop()
            self.probes.clear()
            if self.gc is not None:
                self.gc.stop()
                self.gc = None
            self.mailboxes.uninstall()
            self.mailboxes = MailboxTracker()
            self.adapters.detach()
            self.memory.clear()
            self._refs = []
            self._process = None

    def refresh_loops(self, max_age: float = LOOP_RESCAN) -> list[Any]:
        """Current running loops; new ones get a lag probe (and their eager factory wrapped).

        Finding loops means looking at every task, so the full scan (which also counts each
        loop's tasks) runs at most every ``max_age`` seconds; in between, the known loops that
        still run are reused and a single loop's task count is read from the registry size.
        """
        now = time.monotonic()
        if now - self._loops_scanned_at >= max_age or not self._loops:
            self._loops, self.loop_task_counts = self._scan_loops()
            self._loops_scanned_at = now
        else:
            self._loops = [lp for lp in self._loops if lp.is_running() and not lp.is_closed()]
            if len(self._loops) == 1:
                self.loop_task_counts = {id(self._loops[0]): task_count()}
        loops = self._loops
        with self._lock:
            alive = {id(loop) for loop in loops}
            for key in [k for k in self.probes if k not in alive]:
                self.probes.pop(key).stop()
            if self.clients:
                for loop in loops:
                    if id(loop) not in self.probes:
                        probe = self.probes[id(loop)] = LagProbe(loop)
                        probe.start()
                        with contextlib.suppress(RuntimeError):
                            loop.call_soon_threadsafe(
                                self.steps.install_factory, loop, is_uvloop(loop)
                            )
        return loops

    def _scan_loops(self) -> tuple[list[Any], dict[int, int]]:
        """Running loops and their task counts. Up to ``SCAN_ALL`` tasks every task is looked
        at; beyond, an evenly spaced sample (looking at 100k tasks held the GIL ~40 ms every
        rescan), the known loops kept while they run, and counts scaled from the sample (one
        loop: the registry's exact size)."""
        refs = task_refs()
        if len(refs) <= SCAN_ALL:
            return running_loops(deref(refs))
        step = len(refs) // SCAN_ALL + 1
        loops, counts = running_loops(deref(refs[::step]))
        seen = {id(lp) for lp in loops}
        loops += [
            lp
            for lp in self._loops
            if id(lp) not in seen and lp.is_running() and not lp.is_closed()
        ]
        total = task_count()
        if len(loops) == 1:
            return loops, {id(loops[0]): total}
        sampled = sum(counts.values()) or 1
        return loops, {k: round(v * total / sampled) for k, v in counts.items()}

    def task_refs(self, max_age: float = REFS_MAX_AGE) -> list[Any]:
        """Weak references to every task, from a copy made at most ``max_age`` seconds ago
        (or when the task count moved by a tenth): copying 100k references costs the loop
        3-4 ms, and the round-robin scans and the idle-row fill that use it do not need the
        newest tasks (dead references dereference to None)."""
        now = time.monotonic()
        count = task_count()
        fresh = abs(count - self._refs_count) <= max(16, self._refs_count // 10)
        if not self._refs or now - self._refs_at > max_age or not fresh:
            self._refs = task_refs()
            self._refs_at, self._refs_count = now, count
        return self._refs

    def _start_gc(self) -> None:
        self.gc = GCWatcher()
        self.gc.start()

    # -- ids --------------------------------------------------------------------------------
    def task_id(self, task: Any) -> int:
        n = self._task_ids.get(task)
        if n is None:
            with self._lock:
                n = self._task_ids.get(task)
                if n is None:
                    self._task_seq += 1
                    n = self._task_seq
                    self._task_ids[task] = n
                    self._tasks_by_id[n] = task
        return n

    def task_by_id(self, n: int) -> Any:
        return self._tasks_by_id.get(n)

    # -- node figures -----------------------------------------------------------------------
    def process_figures(self) -> tuple[float | None, int | None]:
        """(CPU % since the previous call, RSS bytes) from psutil."""
        proc = self._process or _psutil_process()
        if proc is None:
            return None, None
        try:
            with proc.oneshot():
                return proc.cpu_percent(None), proc.memory_info().rss
        except Exception:
            return None, None


def _psutil_process() -> Any:
    try:
        proc = psutil.Process()
        proc.cpu_percent(None)  # prime: the next call reports usage since now
        return proc
    except Exception:
        return None
