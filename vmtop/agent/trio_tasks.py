"""Trio tasks as processes: one row per task, memory channels as mailboxes.

A Trio run lives on one thread, and its state may only be read there. The adapter finds each
run from the agent's thread by walking every thread's stack to the ``trio.run`` frame (its
``runner`` local), so it works whether the agent came from ``vmtop run``, from
``vmtop.agent.start()`` inside the program or from ``vmtop attach``. Everything else runs on
the run's own thread, queued with ``runner.entry_queue.run_sync_soon`` (what
``TrioToken.run_sync_soon`` does) and awaited with a timeout, like ``loops.call_in_loop``:

- while a client is attached, each task's steps and the wall time inside them are counted
  in C: its coroutine is wrapped in the counting proxy ``CountingCoro`` (``_factory.c``),
  put in ``task.coro`` (Trio resumes a task with ``task.coro.send``/``throw``), for the tasks
  there at the hello and, from an instrument with only a ``task_spawned`` hook, for each new
  one; the last detach puts every original coroutine back (``CoroCounter``). Trio calls no
  per-step hook then. Without the C extension (or with ``VMTOP_HOOKS=python``) a Trio
  instrument (``before_task_step`` / ``after_task_step``) counts instead (``StepInstrument``:
  about 1 µs a step, most of it Trio's dispatch to instruments);
- rows: the task tree from ``trio.lowlevel.current_root_task()`` (Trio's own system tasks,
  named ``<...>``, left out); current function and what it waits on from
  ``Task.iter_await_frames()``; the parent is the task whose nursery holds it;
- the node header gets one ``LoopStats`` per run, from ``current_statistics()``, with the
  lag of a system task that sleeps 25 ms and notes how late it wakes (``TrioLagProbe``);
- mailboxes: a ``MemoryReceiveChannel``'s consumers are the tasks seen calling
  ``receive_nowait`` (which ``receive`` starts with; wrapped while attached), the tasks parked
  in its ``receive``, and — until one of those is seen — the tasks that hold it in a local or
  an attribute of ``self`` (a parent that handed it to a child not counted). One consumer:
  its MAILBOX is ``statistics().current_buffer_used``; several: a ``queue`` row.
"""

from __future__ import annotations

import collections.abc
import concurrent.futures
import heapq
import itertools
import logging
import math
import os
import sys
import sysconfig
import threading
import time
import weakref
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from profilers import priority
from vmtop.agent.lag import LagProbe
from vmtop.agent.loops import LoopTimeout
from vmtop.agent.memory import estimate
from vmtop.agent.objects import attribute_values
from vmtop.agent.tasks import frame_location
from vmtop.agent.threads import stack_of
from vmtop.records import Location, LoopStats, ProcessRow

if TYPE_CHECKING:
    from vmtop.agent.adapters import AdapterRows
    from vmtop.agent.collector import Collector

log = logging.getLogger("vmtop.agent")

KEY = "trio"  # row keys: "trio:<n>" (tasks)
QUEUE_KEY = "trioq"  # ... and "trioq:<n>" (shared channels)
RUN_TIMEOUT = 1.0  # seconds a run has to answer a snapshot before it is reported blocked
STACK_DEPTH = 400  # frames walked per thread looking for trio.run
SCAN_SECONDS = 0.002  # run time a refresh spends looking for channels in tasks' frames
SCAN_AT_LEAST = 256  # ... after the first this many tasks (a small run: all, every refresh)
MAX_FRAMES = 64
_STDLIB = sysconfig.get_paths()["stdlib"] + os.sep
_VMTOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _trio() -> Any:
    return sys.modules.get("trio")


def _trio_dir() -> str:
    trio = _trio()
    return os.path.dirname(getattr(trio, "__file__", "") or "/nonexistent") + os.sep


class StepInstrument:
    """Counts each task's steps and the wall time inside them (a Trio instrument): the
    fallback when the C counting proxy is not there (``CoroCounter``).

    Trio calls each hook through ``Instruments.call`` (a copy of the hook's instrument list,
    a ``getattr``, a ``try``): that dispatch is most of the cost, so the hooks themselves do
    as little as they can (benchmarks.md, "Trio")."""

    __slots__ = ("stats", "_t0", "__weakref__")
    note = "trio task: REDS = steps (Trio instrument), TIME = wall time in its steps"

    def __init__(self) -> None:
        self.stats: dict[Any, list[float]] = {}  # task -> [steps, seconds] since attach
        self._t0 = 0.0

    def install(self, runner: Any) -> None:
        _trio().lowlevel.add_instrument(self)

    def uninstall(self, runner: Any) -> None:
        _remove_instrument(self)

    def get(self, task: Any) -> tuple[int, float] | None:
        s = self.stats.get(task)
        return None if s is None else (int(s[0]), s[1])

    def before_task_step(self, task: Any, _now: Any = time.perf_counter) -> None:
        self._t0 = _now()

    def after_task_step(self, task: Any, _now: Any = time.perf_counter) -> None:
        try:
            s = self.stats[task]
        except KeyError:
            self.stats[task] = [1, _now() - self._t0]
            return
        s[0] += 1
        s[1] += _now() - self._t0

    def task_exited(self, task: Any) -> None:
        self.stats.pop(task, None)


class SpawnHook:
    """A Trio instrument with one hook, ``task_spawned`` (once per task, never per step):
    wraps each new task's coroutine for its ``CoroCounter``."""

    __slots__ = ("counter", "_proxy", "_registry", "__weakref__")

    def __init__(self, counter: CoroCounter) -> None:
        self.counter = counter
        self._proxy = counter.proxy
        self._registry = counter.registry

    def task_spawned(self, task: Any) -> None:
        # Trio calls it before the task's first reschedule: no _next_send_fn to rebind yet.
        try:
            if task.name[:1] != "<":
                task.coro = self._proxy(self._registry, task.coro, task, True)
        except Exception:  # an instrument that raises is dropped by Trio: never raise
            log.debug("vmtop agent: trio task not wrapped", exc_info=True)


class CoroCounter:
    """Counts each task's steps and the wall time inside them in C, without a per-step hook.

    Trio runs a step with ``task._next_send_fn(next_send)``, which ``reschedule`` sets to
    ``task.coro.send`` (``task.coro.throw`` after a foreign await). ``install`` (on the run's
    thread, from a ``run_sync_soon`` callback, so no program task is running) puts a
    ``CountingCoro`` (``_factory.c``, the proxy uvloop tasks get) in each task's ``coro`` and
    rebinds a ``_next_send_fn`` already set to the coroutine's method; ``SpawnHook`` does the
    same for each new task before its first step. The proxy's ``send``/``throw`` run the
    coroutine's own and count one step into the task's ``TaskStat`` in a registry of this
    run; it stands in for the coroutine everywhere else (``cr_frame``, ``cr_await``,
    ``cr_running``... are the coroutine's, so ``Task.iter_await_frames``, Trio's
    ``KeyboardInterrupt`` protection and ``inspect.getcoroutinestate`` see through it), adds no
    frame to a traceback and ends the task as the coroutine does (``StopIteration`` with its
    value, the same exception). ``uninstall`` puts every original coroutine back. Trio's own
    system tasks (named ``<...>``; no rows) are not wrapped."""

    note = "trio task: REDS = steps (counted around its coroutine), TIME = wall time in them"

    def __init__(self, proxy: Any, registry: Any) -> None:
        self.proxy = proxy
        self.registry = registry
        self.hook = SpawnHook(self)

    def install(self, runner: Any) -> None:
        _trio().lowlevel.add_instrument(self.hook)
        for task in list(runner.tasks):
            try:
                self.wrap(task, False)
            except Exception:
                log.debug("vmtop agent: trio task not wrapped", exc_info=True)

    def wrap(self, task: Any, new: bool) -> None:
        if task.name.startswith("<"):
            return  # Trio's system tasks, the one running this callback among them
        old = coro = task.coro
        if type(coro) is self.proxy:
            if self.registry.stat(task) is not None:
                return
            coro = coro.__wrapped__  # left by an earlier attach: count here instead
        proxy = self.proxy(self.registry, coro, task, new)
        task.coro = proxy
        _rebind(task, old, proxy)

    def uninstall(self, runner: Any) -> None:
        _remove_instrument(self.hook)
        for task in list(runner.tasks):
            proxy = task.coro
            if type(proxy) is self.proxy:
                inner = proxy.__wrapped__
                task.coro = inner
                _rebind(task, proxy, inner)
        self.registry.clear()  # a proxy still referenced elsewhere counts into nothing read

    def get(self, task: Any) -> tuple[int, float] | None:
        stat = self.registry.stat(task)
        return None if stat is None else (int(stat.steps), float(stat.secs))


def _rebind(task: Any, old: Any, new: Any) -> None:
    """A task queued to run resumes with ``old.send`` (or ``throw``): make it ``new``'s."""
    fn = task._next_send_fn
    if fn is not None and getattr(fn, "__self__", None) is old:
        task._next_send_fn = getattr(new, fn.__name__)


def make_counter() -> StepInstrument | CoroCounter:
    """The C counting proxy when the C hooks are built and wanted, else the instrument."""
    from vmtop.agent.step_hooks import use_c_hooks

    trio = _trio()
    if use_c_hooks() and trio is not None:
        try:
            from vmtop.agent._hooks import CountingCoro, Registry

            collections.abc.Coroutine.register(CountingCoro)  # isinstance() as before (idempotent)
            return CoroCounter(CountingCoro, Registry(trio.Cancelled))
        except ImportError:
            pass
    return StepInstrument()


@dataclass
class Channel:
    ref: Any  # weakref to the MemoryChannelState (shared by a channel and its clones)
    seq: int
    consumers: dict[int, Any] = field(default_factory=dict)  # id(task) -> weakref, seen receiving
    holders: dict[int, Any] = field(default_factory=dict)  # id(task) -> weakref, holding it

    def live(self, which: dict[int, Any]) -> list[Any]:
        out = []
        for key, ref in list(which.items()):
            task = ref()
            if task is None or getattr(task, "coro", None) is None or _exited(task):
                which.pop(key, None)  # the run's thread and a detail request may both prune
            else:
                out.append(task)
        return out

    def consumer_tasks(self) -> list[Any]:
        """Tasks seen receiving, else the holders that are not an ancestor of another."""
        seen = self.live(self.consumers)
        state = self.ref()
        if state is not None:
            waiting = list(getattr(state, "receive_tasks", {}) or {})
            seen += [t for t in waiting if all(t is not s for s in seen)]
        if seen:
            return seen
        holders = self.live(self.holders)
        return [h for h in holders if not any(_is_ancestor(h, o) for o in holders if o is not h)]


class Channels:
    """Memory channels and their consumers (ids of channels and tasks, weakly)."""

    def __init__(self) -> None:
        self.by_state: dict[int, Channel] = {}
        self._seq = itertools.count(1)
        self._original: Any = None
        self._wrapper: Any = None
        self._cursor = 0

    def note(self, channel: Any, task: Any, receiving: bool) -> None:
        state = getattr(channel, "_state", None)
        if state is None:
            return
        info = self.by_state.get(id(state))
        if info is None or info.ref() is not state:
            info = self.by_state[id(state)] = Channel(weakref.ref(state), next(self._seq))
        which = info.consumers if receiving else info.holders
        if id(task) not in which:
            which[id(task)] = weakref.ref(task)

    def install(self) -> None:
        """Wrap ``MemoryReceiveChannel.receive_nowait`` (``receive`` starts with it) to note
        which task receives from which channel."""
        trio = _trio()
        cls = getattr(trio, "MemoryReceiveChannel", None)
        if cls is None or self._original is not None:
            return
        original = cls.receive_nowait
        current_task = trio.lowlevel.current_task
        by_state = self.by_state
        note = self.note

        def receive_nowait(channel: Any) -> Any:
            try:
                task = current_task()
                info = by_state.get(id(channel._state))
                if info is None or id(task) not in info.consumers:
                    note(channel, task, True)
            except Exception:
                pass  # never raise into the program's receive()
            return original(channel)

        receive_nowait.__wrapped__ = original  # type: ignore[attr-defined]
        self._original, self._wrapper = original, receive_nowait
        cls.receive_nowait = receive_nowait

    def uninstall(self) -> None:
        cls = getattr(_trio(), "MemoryReceiveChannel", None)
        if cls is not None and self._original is not None and cls.receive_nowait is self._wrapper:
            cls.receive_nowait = self._original
        self._original = self._wrapper = None

    def scan(self, tasks: list[Any], seconds: float = SCAN_SECONDS) -> None:
        """Channels held by tasks (locals and ``self`` attributes of their await frames), and
        tasks parked in ``receive``: a round robin, ``SCAN_AT_LEAST`` tasks then under
        ``seconds`` a refresh (a parent that holds its child's channel is set aside only
        once the child was seen too)."""
        receive_cls = getattr(_trio(), "MemoryReceiveChannel", None)
        if receive_cls is None or not tasks:
            return
        deadline = time.perf_counter() + seconds
        n = len(tasks)
        start = self._cursor % n
        done = 0
        while done < n and (done < SCAN_AT_LEAST or time.perf_counter() < deadline):
            task = tasks[(start + done) % n]
            done += 1
            parked = getattr(task, "custom_sleep_data", None)
            if isinstance(parked, receive_cls):
                self.note(parked, task, True)
            for frame in await_frames(task):
                if _foreign(frame):
                    continue
                for value in _frame_values(frame):
                    if isinstance(value, receive_cls):
                        self.note(value, task, False)
        self._cursor = start + done

    def mailboxes(self) -> tuple[dict[int, list[Channel]], list[tuple[Channel, list[Any]]]]:
        """({id(task): its own channels}, [(shared channel, its consumers)])."""
        own: dict[int, list[Channel]] = {}
        shared = []
        for key, info in list(self.by_state.items()):
            if info.ref() is None:
                self.by_state.pop(key, None)
                continue
            consumers = info.consumer_tasks()
            if len(consumers) == 1:
                own.setdefault(id(consumers[0]), []).append(info)
            elif consumers:
                shared.append((info, consumers))
        return own, shared


class TrioLagProbe(LagProbe):
    """A system task of the run that sleeps ``INTERVAL`` and notes how late it wakes (what
    ``LagProbe`` does with ``call_later`` on an asyncio loop); started and cancelled on the
    run's thread. Its name starts with ``<``, like Trio's own system tasks: not a row."""

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self._scope: Any = None

    def start(self) -> None:
        trio = _trio()
        self.last_tick = time.monotonic()
        trio.lowlevel.spawn_system_task(self._probe, name="<vmtop lag probe>")

    async def _probe(self) -> None:
        trio = _trio()
        with trio.CancelScope() as scope:
            self._scope = scope
            if self._stopped:
                return
            while True:
                expected = trio.current_time() + self.interval
                await trio.sleep_until(expected)
                lag = max(0.0, trio.current_time() - expected)
                now = time.monotonic()
                self.last_tick = now
                self.samples.append((now, lag))
                self.max_total = max(self.max_total, lag)

    def stop(self) -> None:
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()


@dataclass
class TrioRun:
    """One ``trio.run`` on one thread, while a client is attached."""

    runner: Any  # weakref to trio's Runner
    ident: int
    thread_name: str
    counter: StepInstrument | CoroCounter = field(default_factory=make_counter)
    lag: TrioLagProbe = field(default_factory=lambda: TrioLagProbe())
    ids: Any = field(default_factory=weakref.WeakKeyDictionary)  # task -> n
    tasks_by_id: Any = field(default_factory=weakref.WeakValueDictionary)

    @property
    def name(self) -> str:
        return f"trio-{self.thread_name}"

    def task_id(self, task: Any) -> int:
        n = self.ids.get(task)
        if n is None:
            n = self.ids[task] = next(_TASK_SEQ)
            self.tasks_by_id[n] = task
        return int(n)

    def call(self, fn: Any, timeout: float = RUN_TIMEOUT) -> Any:
        """Run ``fn()`` on the run's thread, inside the run; :class:`LoopTimeout` if it does
        not answer in time (the callback then does nothing when it finally runs)."""
        runner = self.runner()
        if runner is None:
            raise LoopTimeout("trio run finished")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        wake = priority.waker()  # see loops.call_in_loop

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:  # reported to the caller, never raised into trio
                future.set_exception(exc)
            if wake is not None:
                wake.set()

        try:
            runner.entry_queue.run_sync_soon(run)
        except Exception as exc:  # RunFinishedError: the run ended meanwhile
            raise LoopTimeout(f"trio run finished ({type(exc).__name__})") from None
        try:
            return priority.wait_future(future, wake, timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise LoopTimeout(f"trio run did not answer within {timeout:.1f} s") from None

    def post(self, fn: Any) -> None:
        """Queue ``fn()`` on the run's thread without waiting (errors are logged there)."""
        runner = self.runner()
        if runner is None:
            return

        def run() -> None:
            try:
                fn()
            except Exception:
                log.debug("vmtop agent: trio callback failed", exc_info=True)

        try:
            runner.entry_queue.run_sync_soon(run)
        except Exception:
            pass  # the run ended


_TASK_SEQ = itertools.count(1)


def find_runs(frames: dict[int, FrameType] | None = None) -> dict[int, tuple[Any, int]]:
    """``{id(runner): (runner, thread ident)}`` of the ``trio.run`` calls on the stacks now."""
    run_module = sys.modules.get("trio._core._run")
    run_fn = getattr(run_module, "run", None)
    code = getattr(run_fn, "__code__", None)
    if code is None:
        return {}
    if frames is None:
        frames = sys._current_frames()
    out = {}
    for ident, frame in frames.items():
        f: FrameType | None = frame
        depth = 0
        while f is not None and depth < STACK_DEPTH:
            if f.f_code is code:
                try:
                    runner = f.f_locals.get("runner")
                except Exception:
                    runner = None
                if runner is not None:
                    out[id(runner)] = (runner, ident)
                break
            f = f.f_back
            depth += 1
    return out


class TrioAdapter:
    """The :class:`~vmtop.agent.adapters.RuntimeAdapter` for Trio."""

    name = "trio"
    module = "trio"

    def __init__(self) -> None:
        self.runs: dict[int, TrioRun] = {}  # id(runner) -> run
        self.channels = Channels()
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def attach(self) -> None:
        self.channels.install()
        self.refresh_runs()

    def refresh_runs(self) -> list[TrioRun]:
        """Runs on the stacks now; a new one gets the step counter (installed on its thread,
        ahead of any snapshot queued after it)."""
        found = find_runs()
        with self._lock:
            for key in [
                k for k, run in self.runs.items() if k not in found or run.runner() is None
            ]:
                del self.runs[key]
            for key, (runner, ident) in found.items():
                if key in self.runs:
                    continue
                run = self.runs[key] = TrioRun(weakref.ref(runner), ident, _thread_name(ident))
                run.post(lambda c=run.counter, r=runner: c.install(r))
                run.post(run.lag.start)
            return list(self.runs.values())

    def detach(self) -> None:
        with self._lock:
            runs, self.runs = list(self.runs.values()), {}
        self.channels.uninstall()
        if os.getpid() != self._pid:
            return  # a forked child: the run (and its locks) belong to the parent
        for run in runs:
            run.post(lambda c=run.counter, r=run.runner: c.uninstall(r()))
            run.post(run.lag.stop)

    def snapshot(self, collector: Collector, state: dict[str, Any], req: Any) -> AdapterRows:
        from vmtop.agent.adapters import AdapterRows

        out = AdapterRows()
        prev: dict[Any, tuple[float, float]] = state.setdefault("prev", {})
        spent = [0.0]  # seconds on the runs' threads (what the program paid)

        def rows_of(run: TrioRun) -> tuple[LoopStats, list[ProcessRow], int]:
            t0 = time.perf_counter()
            try:
                return _run_rows(self, run, req, prev)
            finally:
                spent[0] += time.perf_counter() - t0

        for run in self.refresh_runs():
            try:
                loop, rows, matched = run.call(lambda r=run: rows_of(r))
            except LoopTimeout as exc:
                runner = run.runner()
                if runner is None or "finished" in str(exc):
                    continue
                frame = sys._current_frames().get(run.ident)
                out.loops.append(
                    LoopStats(
                        name=run.name,
                        thread=run.thread_name,
                        thread_id=run.ident,
                        tasks=len(getattr(runner, "tasks", ()) or ()),
                        ready=len(getattr(runner, "runq", ()) or ()),
                        blocked_for=max(RUN_TIMEOUT, run.lag.blocked_for()),
                        blocked_stack=tuple(stack_of(frame)),
                        note="trio run",
                    )
                )
                out.notes.append(f"{run.name} blocked for {RUN_TIMEOUT:.1f} s: rows not read")
                continue
            out.loops.append(loop)
            out.rows += rows
            out.matched += matched
        out.loop_time = spent[0]
        return out

    def detail(self, collector: Collector, key: str) -> dict[str, Any] | None:
        kind, _, ident = key.partition(":")
        if kind not in (KEY, QUEUE_KEY) or not ident.isdigit():
            return None
        from vmtop.agent.detail import NotFound

        if kind == QUEUE_KEY:
            found = _channel_detail(self.channels, key, int(ident))
            if found is None:
                raise NotFound(f"no shared trio channel {key}")
            return found
        for run in list(self.runs.values()):
            task = run.tasks_by_id.get(int(ident))
            if task is not None:
                return dict(run.call(lambda r=run, t=task: _task_detail(self, r, key, t)))
        raise NotFound(f"no trio task {key} (finished, or never listed)")


def _remove_instrument(instrument: Any) -> None:
    try:
        _trio().lowlevel.remove_instrument(instrument)
    except KeyError:
        pass  # never added, or trio removed it after an error


def _thread_name(ident: int) -> str:
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return "?"


# -- on the run's thread ---------------------------------------------------------------------
def all_tasks() -> list[Any]:
    """The run's tasks, parents first, without Trio's own system tasks (``<init>``...)."""
    root = _trio().lowlevel.current_root_task()
    out = []
    stack = [root]
    while stack:
        task = stack.pop()
        if not task.name.startswith("<"):
            out.append(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return out


def await_frames(task: Any) -> list[FrameType]:
    """Frames of the task's await chain, outermost first."""
    out = []
    try:
        for frame, _ in task.iter_await_frames():
            out.append(frame)
            if len(out) >= MAX_FRAMES:
                break
    except Exception:
        pass
    return out


def _run_rows(
    adapter: TrioAdapter, run: TrioRun, req: Any, prev: dict[Any, tuple[float, float]]
) -> tuple[LoopStats, list[ProcessRow], int]:
    trio = _trio()
    stats = trio.lowlevel.current_statistics()
    tasks = all_tasks()
    io = getattr(getattr(stats, "io_statistics", None), "backend", "?")
    p50, p99, lmax = run.lag.figures()
    loop = LoopStats(
        name=run.name,
        thread=run.thread_name,
        thread_id=run.ident,
        tasks=int(stats.tasks_living),
        ready=int(stats.tasks_runnable),
        lag_p50=p50,
        lag_p99=p99,
        lag_max=lmax,
        lag_max_total=run.lag.max_total,
        note=f"trio run ({io}); run_sync_soon queue {stats.run_sync_soon_queue_size}",
    )
    channels = adapter.channels
    channels.scan(tasks)
    own, shared = channels.mailboxes()
    counts = run.counter
    want_tasks = "task" in req.kinds
    rows: list[ProcessRow] = []
    matched = 0
    if want_tasks:
        text = req.filter
        pool = [t for t in tasks if not text or text in t.name.lower() or text in _coro(t).lower()]
        matched = len(pool)
        scored = []
        for task in pool:
            total = counts.get(task) or (0, 0.0)
            before = prev.get(task, (0, 0.0))
            steps, secs = total[0] - before[0], total[1] - before[1]
            mailbox = _mailbox(own.get(id(task)))
            key = _sort_key(req, steps, secs, total, mailbox)
            scored.append((key, task, steps, secs, total, mailbox))
        for _, task, steps, secs, total, mailbox in heapq.nlargest(req.limit, scored, key=_first):
            rows.append(
                _task_row(run, task, int(steps), secs, total, mailbox, own.get(id(task)), req)
            )
        for task in pool:
            seen = counts.get(task)
            if seen is not None:
                prev[task] = seen
    if "queue" in req.kinds:
        for info, consumers in shared:
            row = _channel_row(info, consumers, req)
            if row is not None:
                rows.append(row)
                matched += 1
    for task in [t for t in prev if getattr(t, "coro", None) is None or _exited(t)]:
        del prev[task]
    return loop, rows, matched


def _sort_key(req: Any, steps: float, secs: float, total: Any, mailbox: int | None) -> float:
    if req.sort == "reductions":
        return float(total[0] if req.accumulate else steps)
    if req.sort == "time":
        return float(total[1] if req.accumulate else secs)
    if req.sort == "mailbox":
        return -1.0 if mailbox is None else float(mailbox)
    return float(steps)  # memory: estimated for the rows returned only, the busiest


def _first(item: tuple[Any, ...]) -> float:
    return float(item[0])


def _mailbox(infos: list[Channel] | None) -> int | None:
    if not infos:
        return None
    total = 0
    for info in infos:
        state = info.ref()
        if state is not None:
            total += len(getattr(state, "data", ()) or ())
    return total


def _task_row(
    run: TrioRun,
    task: Any,
    steps: int,
    secs: float,
    total: Any,
    mailbox: int | None,
    infos: list[Channel] | None,
    req: Any,
) -> ProcessRow:
    frames = await_frames(task)
    current, waiting = _where(frames)
    ready = getattr(task, "_next_send_fn", None) is not None
    memory = None
    if req.memory:
        try:
            roots = [s for s in (i.ref() for i in infos or ()) if s is not None]
            memory = estimate([getattr(s, "data", ()) for s in roots], frames)
        except Exception:
            memory = None
    n = run.task_id(task)
    return ProcessRow(
        key=f"{KEY}:{n}",
        kind="task",
        id=f"t{n}",
        name=task.name,
        state="ready" if ready else "waiting",
        loop=run.name,
        reductions=steps,
        reductions_total=int(total[0]),
        time=secs,
        time_total=float(total[1]),
        mailbox=mailbox,
        memory=memory,
        current=current,
        waiting_on="" if ready else waiting,
        coro=_coro(task),
        runtime="trio",
        parent=_parent_name(task),
        notes=(run.counter.note,),
    )


def _channel_row(info: Channel, consumers: list[Any], req: Any) -> ProcessRow | None:
    state = info.ref()
    if state is None:
        return None
    names = sorted(t.name for t in consumers)
    name = f"MemoryChannel#{info.seq} <- " + ", ".join(names[:4])
    if len(names) > 4:
        name += f" +{len(names) - 4}"
    if req.filter and req.filter not in name.lower():
        return None
    try:
        stats = state.statistics()
        length, putters = int(stats.current_buffer_used), int(stats.tasks_waiting_send)
    except Exception:
        length, putters = len(getattr(state, "data", ()) or ()), 0
    memory = None
    if req.memory:
        try:
            memory = estimate([getattr(state, "data", ())], [])
        except Exception:
            memory = None
    return ProcessRow(
        key=f"{QUEUE_KEY}:{info.seq}",
        kind="queue",
        id=f"tq{info.seq}",
        name=name,
        state="shared",
        mailbox=length,
        memory=memory,
        consumers=len(consumers),
        putters=putters,
        runtime="trio",
        notes=("trio memory channel with several receiving tasks",),
    )


def _channel_detail(channels: Channels, key: str, seq: int) -> dict[str, Any] | None:
    """A shared channel's page (read from the agent's thread: a copy of its buffer and a few
    counters, each read whole under the GIL)."""
    from vmtop.agent.detail import safe_repr

    for info in list(channels.by_state.values()):
        state = info.ref()
        if info.seq != seq or state is None:
            continue
        stats = state.statistics()
        return {
            "key": key,
            "kind": "queue",
            "runtime": "trio",
            "name": f"MemoryChannel#{seq}",
            "length": int(stats.current_buffer_used),
            "putters": int(stats.tasks_waiting_send),
            "consumers": sorted(t.name for t in info.consumer_tasks()),
            "preview": [safe_repr(x) for x in list(getattr(state, "data", ()))[:10]],
        }
    return None


def _task_detail(adapter: TrioAdapter, run: TrioRun, key: str, task: Any) -> dict[str, Any]:
    from vmtop.agent import memory
    from vmtop.agent.detail import frame_info, safe_repr

    frames = await_frames(task)
    total = run.counter.get(task) or (0, 0.0)
    own, _ = adapter.channels.mailboxes()
    boxes = []
    roots = []
    for info in own.get(id(task), []):
        state = info.ref()
        if state is None:
            continue
        data = list(getattr(state, "data", ()) or ())
        roots.append(getattr(state, "data", ()))
        stats = state.statistics()
        boxes.append(
            {
                "queue": f"MemoryChannel#{info.seq}",
                "length": int(stats.current_buffer_used),
                "maxsize": None if math.isinf(stats.max_buffer_size) else stats.max_buffer_size,
                "putters": int(stats.tasks_waiting_send),
                "preview": [safe_repr(x) for x in data[:10]],
            }
        )
    current, waiting = _where(frames)
    return {
        "key": key,
        "kind": "task",
        "runtime": "trio",
        "name": task.name,
        "coro": _coro(task),
        "parent": _parent_name(task),
        "state": "ready" if getattr(task, "_next_send_fn", None) is not None else "waiting",
        "done": False,
        "reductions_total": int(total[0]),
        "time_total": float(total[1]),
        "waiting_on": waiting,
        "current": str(current) if current else "",
        "await_chain": [frame_info(f) for f in frames],
        "mailbox": boxes,
        "memory": memory.estimate(roots, frames),
        "memory_note": memory.NOTE,
    }


def _where(frames: list[FrameType]) -> tuple[Location | None, str]:
    """Innermost frame of the program's code, and the Trio call it awaits (``sleep 1s``)."""
    for i in range(len(frames) - 1, -1, -1):
        if not _foreign(frames[i]):
            callee = frames[i + 1] if i + 1 < len(frames) else None
            return frame_location(frames[i]), _describe(callee)
    if frames:
        return frame_location(frames[-1]), ""
    return None, ""


def _describe(frame: FrameType | None) -> str:
    if frame is None:
        return ""
    code = frame.f_code
    name = str(getattr(code, "co_qualname", code.co_name))
    if code.co_name == "sleep":
        try:
            seconds = frame.f_locals.get("seconds")
        except Exception:
            seconds = None
        if isinstance(seconds, int | float):
            return f"sleep {seconds:g}s"
    return name


def _foreign(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    if filename.startswith(_VMTOP) or filename.startswith(_trio_dir()):
        return True
    return filename.startswith(_STDLIB) and "site-packages" not in filename


def _frame_values(frame: FrameType) -> list[Any]:
    """A frame's locals and the attributes of its ``self``."""
    try:
        local = dict(frame.f_locals)
    except Exception:
        return []
    values = list(local.values())
    owner = local.get("self")
    if owner is not None:  # its attribute values, without making its __dict__ (objects.py)
        values += attribute_values(owner)
    return values


def _coro(task: Any) -> str:
    coro = getattr(task, "coro", None)
    return str(getattr(coro, "__qualname__", "") or "")


def _parent_name(task: Any) -> str:
    nursery = getattr(task, "parent_nursery", None)
    parent = getattr(nursery, "parent_task", None)
    return str(getattr(parent, "name", "") or "")


def _exited(task: Any) -> bool:
    coro = getattr(task, "coro", None)
    return coro is not None and getattr(coro, "cr_frame", 1) is None


def _is_ancestor(a: Any, b: Any) -> bool:
    """``a`` runs the nursery (or a nursery above it) that holds ``b``."""
    task = b
    for _ in range(64):
        nursery = getattr(task, "parent_nursery", None)
        task = getattr(nursery, "parent_task", None)
        if task is None:
            return False
        if task is a:
            return True
    return False
