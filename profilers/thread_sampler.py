"""An in-process sampler thread: every thread's stack, tagged with the asyncio task it runs.

``ThreadSampler`` wakes ``rate`` times a second (100 Hz by default), reads
``sys._current_frames()`` and, for each thread that runs an event loop, the task that loop runs
at that moment (``asyncio.tasks._current_tasks``: loop -> task; ``loop._thread_id`` says which
thread runs which loop, or for uvloop the thread whose stack holds the running task). It skips
its own thread and threads marked ``_vmtop_agent``. The result is a :class:`SampleSet`: plain data (serialisable with ``to_dict``/``from_dict``) that
gives a :class:`~profilers.stacks.StackModel` for the whole process, one thread, one task, or
grouped by task name (task names as the root frames).

Each sample weighs the wall time since the previous tick (unit "seconds"), so a thread sampled
for the whole run weighs the run's duration. The sampler needs the GIL to take a sample: a busy
program lowers the achieved rate (``SampleSet.achieved_rate`` says what it was).

Where a sample lands is biased towards the points where a thread lets go of the GIL. A waiting
thread gets the GIL either when the holder releases it (a blocking call: an event loop's
``select`` between steps) or by forcing a switch after ``sys.getswitchinterval()`` (5 ms by
default). With the default interval, a loop whose steps are shorter than 5 ms is nearly always
seen in ``select``, never in the steps that keep it busy (measured: 2 of 92 samples in a task
that used ~95 % of the loop in 1 ms steps). So the sampler lowers the switch interval to
``switch_interval`` (200 µs by default: 94 of 100) while it runs and restores it afterwards.
A shorter interval only matters while threads compete for the GIL: with several CPU-bound
threads they switch more often (see docs/benchmarks.md); ``switch_interval=None`` leaves the
interval alone.

That is not enough for a loop whose steps are much shorter than the interval: it releases the
GIL at every ``select(0)``, each release wakes the waiting sampler and restarts its wait, so
the interval never runs out and the sampler only ever wins the GIL at a release, i.e. sees the
loop in ``select`` (0 non-idle samples of ~200 for a loop of ``sleep(0)`` steps). With
``main_yields`` (the default, when ``profilers._priority`` is built) the sampler sleeps through
:func:`profilers.priority.sleep`: to take the GIL back it asks the main thread, by a pending
call, to give it up at its next eval-breaker check, so each tick reads the main thread parked
between two bytecodes of whatever Python code it runs (or in a blocking call, if it was in one
then). Other threads are still seen where they let go of the GIL (docs/live-profiles.md).

Memory is
bounded: at most ``max_stacks`` distinct (thread, task, stack) records; samples beyond that are
counted under a ``<stack table full>`` frame, never dropped silently. Stacks deeper than
``max_depth`` keep their innermost frames under a ``<truncated>`` root.
"""

from __future__ import annotations

import asyncio.tasks
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import accumulate, chain, repeat, takewhile
from operator import attrgetter, is_not
from types import CodeType, FrameType
from typing import Any

from profilers import priority, switching
from profilers.stacks import Frame, StackModel

DEFAULT_RATE = 100.0
MAX_RATE = 1000.0
DEFAULT_MAX_STACKS = 50_000
DEFAULT_MAX_DEPTH = 256
DEFAULT_SWITCH_INTERVAL = 0.0002

TRUNCATED = Frame("<truncated>")
TABLE_FULL = Frame("<stack table full>")
# Frames that only start a program (runpy running a script as __main__, and whatever launched
# runpy, such as ``vmtop run``) are cut from the root of every stack by default.
_LAUNCHER_FILES = ("<frozen runpy>", os.sep + "runpy.py")

IDLE_CPU_SHARE = 0.01  # a thread that used less CPU than this share of a tick was idle
MAX_CPU_THREADS = 256  # above this many threads, idle detection is skipped (clock reads cost)


def _wait_codes() -> frozenset[CodeType]:
    """Code of the stdlib functions whose frame is the leaf while a thread blocks in C: an
    event loop polling its selector, a thread waiting on a condition, lock or join."""
    import selectors

    codes = set()
    for name in dir(selectors):
        cls = getattr(selectors, name)
        select = getattr(cls, "select", None) if isinstance(cls, type) else None
        if select is not None and hasattr(select, "__code__"):
            codes.add(select.__code__)
    for fn in (
        threading.Condition.wait,
        getattr(threading.Thread, "_wait_for_tstate_lock", None),
        threading.Thread.join,
    ):
        code = getattr(fn, "__code__", None)
        if code is not None:
            codes.add(code)
    return frozenset(codes)


WAIT_CODES = _wait_codes()

# (thread name, task name or None, root-first frame ids, index of the task's coroutine frame,
#  idle: the thread used (almost) no CPU since the previous tick)
RecordKey = tuple[str, str | None, tuple[int, ...], int, bool]


def task_root(name: str) -> Frame:
    """The root frame that stands for a task in a by-task flamegraph."""
    return Frame(f"task {name}")


def thread_root(name: str) -> Frame:
    """The root frame of samples taken outside any task (by-task view) or per thread."""
    return Frame(f"thread {name}")


@dataclass(slots=True)
class SampleSet:
    """What a sampler run recorded: weighted stacks per (thread, task).

    ``records`` maps ``(thread, task, frame ids root first, task_start, idle)`` to
    ``[samples, seconds]``; ``task_start`` is the index in the stack of the task's coroutine
    frame (0 when the sample was not inside a task); ``idle`` says the thread was waiting:
    its innermost frame is a selector's ``select`` or a ``threading`` wait, or it used less
    than 1 % of the tick's wall time in CPU since the previous tick (a sleep, blocking I/O),
    like py-spy's idle threads. Views leave idle samples out unless asked.
    """

    frames: list[Frame] = field(default_factory=list)
    records: dict[RecordKey, list[float]] = field(default_factory=dict)
    rate: float = DEFAULT_RATE
    duration: float = 0.0
    ticks: int = 0
    overflow: int = 0  # samples that did not fit the stack table
    truncated: int = 0  # samples whose stack was deeper than max_depth
    errors: int = 0  # ticks that failed (reported, never raised into the program)
    switch_interval: float | None = None  # the GIL switch interval used while sampling
    cpu_time: float = 0.0  # CPU seconds the sampler thread used (its own cost)
    main_yields: bool = False  # each tick parked the main thread at an eval-breaker check

    # -- figures ---------------------------------------------------------------------------
    @property
    def achieved_rate(self) -> float:
        """Ticks per second actually taken (the GIL and a busy program lower it)."""
        return self.ticks / self.duration if self.duration > 0 else 0.0

    @property
    def samples(self) -> int:
        """Thread samples, idle ones included (one tick samples every thread)."""
        return int(sum(v[0] for v in self.records.values()))

    def count(
        self, *, task: str | None = None, thread: str | None = None, idle: bool = False
    ) -> int:
        """Thread samples that match (the ones :meth:`model` with the same filters uses)."""
        return int(
            sum(v[0] for key, v in self.records.items() if _matches(key, task, thread, idle))
        )

    def threads(self) -> dict[str, int]:
        """Samples per thread name, most sampled first."""
        return _ranked((key[0], v[0]) for key, v in self.records.items())

    def tasks(self) -> dict[str, int]:
        """Samples per task name (samples taken while that task ran), most sampled first."""
        return _ranked((key[1], v[0]) for key, v in self.records.items() if key[1] is not None)

    # -- views -----------------------------------------------------------------------------
    def model(
        self,
        *,
        by_task: bool = False,
        task: str | None = None,
        thread: str | None = None,
        idle: bool = False,
        trim_launcher: bool = True,
        name: str = "profile",
    ) -> StackModel:
        """A stack model (unit "seconds") of the samples that match.

        ``task``: only samples taken while a task of that name ran, from its coroutine frame
        down. ``thread``: only that thread's samples. ``by_task``: every stack under a root
        frame ``task NAME`` (from the task's coroutine down), or ``thread NAME`` for samples
        taken outside any task (the loop polling, plain threads). ``idle``: keep the samples of
        threads that were idle (wall-clock view); by default only running threads count.
        """
        out = StackModel(unit="seconds", name=name)
        frames = self.frames
        for key, (_count, seconds) in self.records.items():
            if not _matches(key, task, thread, idle):
                continue
            thread_name, task_name, ids, start, _idle = key
            if task_name is not None and (task is not None or by_task):
                stack = [frames[i] for i in ids[start:]]
            else:
                skip = _launcher_cut(ids, frames) if trim_launcher else 0
                stack = [frames[i] for i in ids[skip:]]
            if by_task:
                root = task_root(task_name) if task_name is not None else thread_root(thread_name)
                stack.insert(0, root)
            out.add(stack, seconds)
        return out

    def groups(self, by: str = "task") -> dict[str, StackModel]:
        """One model per task name (``by="task"``) or per thread name (``by="thread"``)."""
        if by == "task":
            return {name: self.model(task=name, name=name) for name in self.tasks()}
        if by == "thread":
            return {name: self.model(thread=name, name=name) for name in self.threads()}
        raise ValueError(f"group by 'task' or 'thread', not {by!r}")

    # -- plain data ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": [[f.function, f.file, f.line] for f in self.frames],
            "records": [
                [thread, task, list(ids), start, idle, int(v[0]), v[1]]
                for (thread, task, ids, start, idle), v in self.records.items()
            ],
            "rate": self.rate,
            "duration": self.duration,
            "ticks": self.ticks,
            "overflow": self.overflow,
            "truncated": self.truncated,
            "errors": self.errors,
            "switch_interval": self.switch_interval,
            "cpu_time": self.cpu_time,
            "main_yields": self.main_yields,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleSet:
        """Inverse of :meth:`to_dict`; malformed data raises ``ValueError``."""
        try:
            frames = [Frame(str(fn), str(file), int(line)) for fn, file, line in data["frames"]]
            records: dict[RecordKey, list[float]] = {}
            n = len(frames)
            for thread, task, ids, start, idle, count, seconds in data["records"]:
                key_ids = tuple(int(i) for i in ids)
                if any(not 0 <= i < n for i in key_ids):
                    raise ValueError("frame index out of range")
                task_name = None if task is None else str(task)
                key = (str(thread), task_name, key_ids, int(start), bool(idle))
                entry = records.setdefault(key, [0.0, 0.0])
                entry[0] += float(count)
                entry[1] += float(seconds)
            return cls(
                frames=frames,
                records=records,
                rate=float(data["rate"]),
                duration=float(data["duration"]),
                ticks=int(data["ticks"]),
                overflow=int(data.get("overflow", 0)),
                truncated=int(data.get("truncated", 0)),
                errors=int(data.get("errors", 0)),
                switch_interval=_optional_float(data.get("switch_interval")),
                cpu_time=float(data.get("cpu_time", 0.0)),
                main_yields=bool(data.get("main_yields", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a sample set: {exc}") from None


def _matches(key: RecordKey, task: str | None, thread: str | None, idle: bool) -> bool:
    return (
        (idle or not key[4])
        and (thread is None or key[0] == thread)
        and (task is None or key[1] == task)
    )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _ranked(pairs: Iterator[tuple[Any, float]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, count in pairs:
        counts[name] = counts.get(name, 0) + int(count)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _launcher_cut(ids: tuple[int, ...], frames: list[Frame]) -> int:
    """How many root frames to drop: everything down to the last launcher (runpy) frame."""
    cut = 0
    for depth, i in enumerate(ids):
        if frames[i].file.endswith(_LAUNCHER_FILES):
            cut = depth + 1
    return cut


class ThreadSampler:
    """Sample every thread's stack ``rate`` times a second until ``duration`` or :meth:`stop`.

    ``run(duration)`` samples on the calling thread (which is then not sampled itself);
    ``start(duration)`` does it on a new daemon thread (marked ``_vmtop_agent``). Either way
    the result is :attr:`result`, a :class:`SampleSet`, complete once the run returned.
    """

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        *,
        max_stacks: int = DEFAULT_MAX_STACKS,
        max_depth: int = DEFAULT_MAX_DEPTH,
        switch_interval: float | None = DEFAULT_SWITCH_INTERVAL,
        hide_prefixes: tuple[str, ...] = (),
        main_yields: bool = True,
    ) -> None:
        if not 0 < rate <= MAX_RATE:
            raise ValueError(f"rate must be between 0 and {MAX_RATE:g} samples/s, not {rate!r}")
        if max_stacks < 1 or max_depth < 1:
            raise ValueError("max_stacks and max_depth must be positive")
        if switch_interval is not None and not 0 < switch_interval <= 1:
            raise ValueError(f"switch_interval must be between 0 and 1 s, not {switch_interval!r}")
        self.rate = float(rate)
        self.max_stacks = max_stacks
        self.max_depth = max_depth
        self.switch_interval = switch_interval
        self.hide_prefixes = tuple(hide_prefixes)
        self.main_yields = main_yields and priority.available()
        self.result = SampleSet(
            rate=self.rate, switch_interval=switch_interval, main_yields=self.main_yields
        )
        self.started_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._code_ids: dict[CodeType, int] = {}
        self._cpu: dict[int, float] = {}  # thread ident -> CPU seconds at the previous tick
        self._loop_threads: dict[int, int] = {}  # id(loop) -> ident, loops without _thread_id
        # (thread, task code) -> (codes, ids, task start, in task) of the last stack seen there
        self._memo: dict[tuple[str, CodeType | None], tuple[Any, ...]] = {}
        self._frame_ids: dict[Frame, int] = {}
        self._lock = threading.Lock()

    # -- control ---------------------------------------------------------------------------
    def run(self, duration: float | None = None) -> SampleSet:
        """Sample on this thread for ``duration`` seconds (None: until :meth:`stop`)."""
        if self.started_at is not None:
            raise RuntimeError("a ThreadSampler runs once; make a new one")
        interval = 1.0 / self.rate
        me = threading.get_ident()
        start = time.perf_counter()
        self.started_at = start
        deadline = None if duration is None else start + duration
        previous = start - interval
        next_tick = start
        result = self.result
        sleep = priority.sleep if self.main_yields else time.sleep
        cpu_start = time.thread_time()
        switch_token = None
        if self.switch_interval is not None:
            switch_token = switching.push(self.switch_interval)
        else:
            result.switch_interval = sys.getswitchinterval()
        frames_now = sys._current_frames()
        if len(frames_now) <= MAX_CPU_THREADS:
            for ident in frames_now:
                self._cpu[ident] = _thread_cpu(ident)
        del frames_now
        try:
            while not self._stop.is_set():
                now = time.perf_counter()
                if deadline is not None and now >= deadline:
                    break
                try:
                    self._tick(me, now - previous)
                except Exception:
                    result.errors += 1
                result.ticks += 1
                previous = now
                next_tick += interval
                if next_tick < now:  # fell behind (GIL, busy program): do not burst
                    next_tick = now + interval
                wake = next_tick if deadline is None else min(next_tick, deadline)
                pause = wake - time.perf_counter()
                if pause > 0:
                    # Sleeps are cheaper than Event.wait (no lock to allocate and take each
                    # tick); stop() is then seen within one short interval. Long pauses
                    # (low rates) sleep in slices so that stop() is seen as soon.
                    while pause > 0 and not self._stop.is_set():
                        sleep(min(pause, 0.05))
                        pause = wake - time.perf_counter()
        finally:
            result.duration = time.perf_counter() - start
            result.cpu_time = time.thread_time() - cpu_start
            self._code_ids.clear()  # do not keep the program's code objects alive
            self._cpu.clear()
            self._loop_threads.clear()
            self._memo.clear()
            if switch_token is not None:
                # Gives the program's interval back unless it set one meanwhile (theirs wins).
                switching.pop(switch_token)
        return result

    def start(self, duration: float | None = None) -> None:
        """Run on a new daemon thread; :meth:`stop` / :meth:`join` end and wait for it."""
        thread = threading.Thread(
            target=self.run, args=(duration,), name="vmtop-sampler", daemon=True
        )
        thread._vmtop_agent = True  # type: ignore[attr-defined]
        self._thread = thread
        thread.start()

    def stop(self) -> None:
        """End the run early (thread-safe); the samples taken so far stay."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> SampleSet:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result

    @property
    def elapsed(self) -> float:
        return 0.0 if self.started_at is None else time.perf_counter() - self.started_at

    # -- one tick --------------------------------------------------------------------------
    def _tick(self, me: int, weight: float) -> None:
        frames = sys._current_frames()
        frames.pop(me, None)
        idents = list(frames)
        stacks = _code_stacks(frames.values(), self.max_depth + 1)
        del frames  # hold no frame object of another thread past this point
        running = _running_tasks(idents, stacks, self._loop_threads)
        active = threading._active  # type: ignore[attr-defined]
        cpu = self._cpu if len(idents) <= MAX_CPU_THREADS else None
        if cpu is not None and len(cpu) > 2 * len(idents):
            alive = set(idents)
            for gone in [i for i in cpu if i not in alive]:
                del cpu[gone]
        for ident, codes in zip(idents, stacks, strict=True):
            thread = active.get(ident)
            if thread is not None and getattr(thread, "_vmtop_agent", False):
                continue
            if not codes:
                continue
            name = thread.name if thread is not None else f"thread-{ident}"
            task = running.get(ident)
            task_name: str | None = None
            task_code: CodeType | None = None
            if task is not None:
                task_name, task_code = _task_info(task)
            idle = codes[0] in WAIT_CODES
            if cpu is not None:
                now = _thread_cpu(ident)
                before = cpu.get(ident)
                cpu[ident] = now
                if before is not None and now - before < IDLE_CPU_SHARE * weight:
                    idle = True
            self._record(name, task_name, task_code, codes, weight, idle)

    def _record(
        self,
        thread: str,
        task: str | None,
        task_code: CodeType | None,
        codes: list[CodeType],
        weight: float,
        idle: bool,
    ) -> None:
        """Add one thread's stack (``codes``: innermost first, up to max_depth + 1)."""
        result = self.result
        memo_key = (thread, task_code)
        memo = self._memo.get(memo_key)
        if memo is not None and memo[0] == codes:  # same stack as last time (C-speed compare)
            ids_key, start, in_task = memo[1], memo[2], memo[3]
            if len(codes) > self.max_depth:
                result.truncated += 1
        else:
            ids_key, start, in_task = self._ids(codes, task_code)
            self._memo[memo_key] = (codes, ids_key, start, in_task)
        if not in_task:
            task = None
        key = (thread, task, ids_key, start, idle)
        records = result.records
        entry = records.get(key)
        if entry is None:
            if len(records) >= self.max_stacks:
                result.overflow += 1
                key = (thread, None, (self._frame_id(TABLE_FULL),), 0, idle)
                entry = records.get(key)
            if entry is None:
                entry = records[key] = [0, 0.0]
        entry[0] += 1
        entry[1] += weight

    def _ids(
        self, codes: list[CodeType], task_code: CodeType | None
    ) -> tuple[tuple[int, ...], int, bool]:
        """(frame ids root first, index of the task's coroutine frame, whether it was found)."""
        code_ids = self._code_ids
        truncated = len(codes) > self.max_depth
        ids: list[int] = [self._frame_id(TRUNCATED)] if truncated else []
        if truncated:
            self.result.truncated += 1
            codes = codes[: self.max_depth]
        start = -1  # root-first index of the task's coroutine frame (its outermost one)
        for code in reversed(codes):
            i = code_ids.get(code)
            if i is None:
                i = code_ids[code] = self._code_id(code)
            if start < 0 and code is task_code:
                start = len(ids)
            if i >= 0:
                ids.append(i)
        if start < 0:  # the task's coroutine is not on this stack (or is cut off)
            return tuple(ids), 0, False
        return tuple(ids), start, True

    def _code_id(self, code: CodeType) -> int:
        """Frame index of a code object; -1 for hidden files (their frames are left out)."""
        if self.hide_prefixes and code.co_filename.startswith(self.hide_prefixes):
            return -1
        return self._frame_id(_code_frame(code))

    def _frame_id(self, frame: Frame) -> int:
        i = self._frame_ids.get(frame)
        if i is None:
            i = self._frame_ids[frame] = len(self.result.frames)
            self.result.frames.append(frame)
        return i


def _thread_cpu(ident: int) -> float:
    """CPU seconds used by a thread (``threading.get_ident()``); inf when unknown, which makes
    every sample of that thread count as running."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, AttributeError, OverflowError, ValueError):
        return float("inf")


def _code_frame(code: CodeType) -> Frame:
    return Frame(getattr(code, "co_qualname", code.co_name), code.co_filename, code.co_firstlineno)


def _code_stacks(leaves: Iterable[FrameType], depth: int) -> list[list[CodeType]]:
    """The code objects of each thread's stack, innermost first, at most ``depth`` each.

    The walk is one expression of C iterators (``accumulate`` over ``getattr(frame,
    "f_back")``, ``takewhile`` not None, ``map`` to ``f_code``): no Python bytecode runs while
    it follows the other threads' frames, so the interpreter cannot switch threads in the
    middle and those threads cannot pop frames we are reading. Only code objects (immutable)
    leave this function; the frame objects are dropped with the iterators.
    """
    walks = map(
        takewhile,
        repeat(_NOT_NONE),
        map(
            accumulate,
            map(chain, zip(leaves), map(repeat, repeat("f_back"), repeat(depth - 1))),
            repeat(getattr),
        ),
    )
    return list(map(list, map(map, repeat(_F_CODE), walks)))


_NOT_NONE = partial(is_not, None)
_F_CODE = attrgetter("f_code")


def _running_tasks(
    idents: list[int], stacks: list[list[CodeType]], loop_threads: dict[int, int]
) -> dict[int, Any]:
    """thread ident -> the task its event loop runs right now (3.11-3.13).

    Stdlib loops record their thread in ``_thread_id``; for other loops (uvloop keeps it in C)
    the thread whose stack holds the running task's coroutine code is found once and
    remembered in ``loop_threads`` (id(loop) -> thread ident).
    """
    current = getattr(asyncio.tasks, "_current_tasks", None)
    if not current:
        return {}
    out: dict[int, Any] = {}
    for _ in range(3):
        try:
            pairs = list(current.items())
            break
        except RuntimeError:  # changed size while copied: try again
            continue
    else:
        return out
    for loop, task in pairs:
        ident = getattr(loop, "_thread_id", None)
        if not isinstance(ident, int):
            ident = loop_threads.get(id(loop))
            if ident is None:
                _name, code = _task_info(task)
                ident = next(
                    (i for i, codes in zip(idents, stacks, strict=True) if code in codes), None
                )
                if ident is None:
                    continue
                loop_threads[id(loop)] = ident
        out[ident] = task
    return out


def _task_info(task: Any) -> tuple[str | None, CodeType | None]:
    """(name, code of the task's coroutine) of a running task; (None, None) if unreadable.

    The code object, not the coroutine's frame: asking a running coroutine for ``cr_frame``
    from another thread would make a frame object of a frame that thread is executing.
    """
    try:
        name = str(task.get_name())
        coro = task.get_coro()
    except Exception:
        return None, None
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    return name, code if isinstance(code, CodeType) else None
