"""Build a :class:`~vmtop.records.Snapshot` for one client: select in the target, top N only.

Per loop, on the loop's own thread: prune finished tasks, note queue consumers (cheap when
nothing moved), pick the top N by the sort key with a bounded heap, and only then compute
names, stacks, mailboxes and memory for those N. Threads and shared queues are added on the
agent thread. A loop that does not answer in time is reported as blocked, with its thread's
current stack, instead of holding the client up.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import operator
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from vmtop._version import __version__
from vmtop.agent import tasks
from vmtop.agent.collector import Collector
from vmtop.agent.groups import GroupMark, group_rows
from vmtop.agent.loops import (
    LoopTimeout,
    call_in_loop,
    deref,
    is_uvloop,
    loop_thread_id,
    loop_thread_name,
    task_refs,
)
from vmtop.agent.mailbox import blocked_putters, queue_length, thread_gets_now
from vmtop.agent.memory import estimate
from vmtop.agent.node import node_info
from vmtop.agent.threads import sample_threads, stack_of
from vmtop.records import KINDS, SORT_KEYS, LoopStats, NodeInfo, ProcessRow, Snapshot

LOOP_TIMEOUT = 1.0
GROUP_LIMIT = 20


@dataclass
class SnapshotRequest:
    sort: str = "reductions"
    limit: int = 50
    filter: str = ""
    accumulate: bool = False
    kinds: tuple[str, ...] = KINDS
    memory: bool = True
    groups: int = GROUP_LIMIT  # coroutine groups to return (0: none)

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> SnapshotRequest:
        sort = args.get("sort", "reductions")
        if sort not in SORT_KEYS:
            raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}")
        limit = args.get("limit", 50)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= 100_000:
            raise ValueError("limit must be an integer from 1 to 100000")
        text = args.get("filter", "")
        if not isinstance(text, str) or len(text) > 200:
            raise ValueError("filter must be a string of at most 200 characters")
        kinds = args.get("kinds", list(KINDS))
        if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds):
            raise ValueError(f"kinds must be a non-empty list of {', '.join(KINDS)}")
        groups = args.get("groups", GROUP_LIMIT)
        if not isinstance(groups, int) or isinstance(groups, bool) or not 0 <= groups <= 10_000:
            raise ValueError("groups must be an integer from 0 to 10000")
        return cls(
            sort=sort,
            limit=limit,
            filter=text.lower(),
            accumulate=bool(args.get("accumulate", False)),
            kinds=tuple(kinds),
            memory=bool(args.get("memory", True)),
            groups=groups,
        )


@dataclass
class Session:
    """Per-client memory of the previous totals, for per-interval deltas.

    ``pending`` is this client's sink in :class:`~vmtop.agent.step_hooks.StepCounter`:
    ``TaskStat -> [steps, s]`` since its last snapshot (stats hold no task once it finished).
    """

    pending: dict[Any, list[float]] = field(default_factory=dict)
    prev_threads: dict[int, float] = field(default_factory=dict)
    prev_thread_gets: dict[int, int] = field(default_factory=dict)  # ident -> queue gets
    prev_groups: dict[Any, GroupMark] = field(default_factory=dict)  # GroupStat -> counters
    prev_tasks: tuple[int, int] = (0, 0)  # registry (created, finished) at the last snapshot
    prev_time: float = field(default_factory=time.monotonic)
    loop_time: float = 0.0  # seconds the last snapshot spent on loop threads
    adapters: dict[str, Any] = field(default_factory=dict)  # runtime adapter -> its state
    hello_threads: dict[int, float] = field(default_factory=dict)  # thread CPU at the hello

    def __post_init__(self) -> None:
        # Threads that exist when the client arrives: their first interval starts now.
        self.prev_threads = {s.ident: s.cpu for s in sample_threads() if s.cpu is not None}
        self.hello_threads = dict(self.prev_threads)
        self.prev_thread_gets = thread_gets_now()


def take_snapshot(collector: Collector, session: Session, req: SnapshotRequest) -> Snapshot:
    t0 = time.perf_counter()
    session.loop_time = 0.0
    now = time.monotonic()
    interval = now - session.prev_time
    loops = collector.refresh_loops()
    rows: list[ProcessRow] = []
    loop_stats: list[LoopStats] = []
    total_rows = 0
    notes: list[str] = []
    for loop in loops:
        stats, loop_rows, matched = _one_loop(collector, session, req, loop, notes)
        loop_stats.append(stats)
        rows.extend(loop_rows)
        total_rows += matched

    # Runtime adapters (Pykka actors, Trio runs: vmtop/agent/adapters.py) before the threads:
    # an actor's row replaces its thread's row (the adapter claims the thread).
    extra = collector.adapters.snapshot(collector, session, req)
    rows.extend(extra.rows)
    total_rows += extra.matched
    loop_stats.extend(extra.loops)
    notes.extend(extra.notes)
    session.loop_time += extra.loop_time

    thread_rows, matched = _thread_rows(collector, session, req, interval)
    rows.extend(thread_rows)
    total_rows += matched
    queue_rows = _queue_rows(collector, req)
    rows.extend(queue_rows)
    total_rows += len(queue_rows)

    rows = _top(rows, req)
    collector.mailboxes.new_interval()  # each queue's next dequeue names its consumer again
    groups = group_rows(collector.steps.groups(), session.prev_groups, req)
    session.prev_time = now
    node = node_info(collector, loop_stats, sum(s.tasks for s in loop_stats))
    node = _with_task_counts(node, collector, session)
    return Snapshot(
        node=node,
        rows=tuple(rows),
        sort=req.sort,
        accumulate=req.accumulate,
        interval=interval,
        total_rows=total_rows,
        taken_at=time.time(),
        cost=time.perf_counter() - t0,
        loop_time=session.loop_time,
        notes=tuple(notes),
        groups=tuple(groups),
    )


def _one_loop(
    collector: Collector, session: Session, req: SnapshotRequest, loop: Any, notes: list[str]
) -> tuple[LoopStats, list[ProcessRow], int]:
    """One event loop's header figures, and its task rows selected on its own thread; a loop
    that does not answer in ``LOOP_TIMEOUT`` is reported blocked, with its thread's stack."""
    name = f"loop-{loop_thread_name(loop)}"
    probe = collector.probes.get(id(loop))
    p50, p99, lmax = probe.figures() if probe else (None, None, None)
    uv = is_uvloop(loop)
    counted = collector.steps.counts_loop(loop, uv)
    note = ""
    if uv:
        note = (
            "uvloop: steps counted for tasks created after the attach"
            if counted
            else "uvloop: task steps are not counted (needs the C hooks)"
        )
    stats: dict[str, Any] = dict(
        name=name,
        thread=loop_thread_name(loop),
        thread_id=loop_thread_id(loop) or 0,
        tasks=collector.loop_task_counts.get(id(loop), 0),
        ready=len(getattr(loop, "_ready", ()) or ()),
        lag_p50=p50,
        lag_p99=p99,
        lag_max=lmax,
        lag_max_total=probe.max_total if probe else None,
        steps_counted=counted,
        note=note,
    )
    if "task" not in req.kinds:
        return LoopStats(**stats), [], 0
    try:
        loop_rows, matched = call_in_loop(
            loop,
            functools.partial(_loop_rows, collector, session, req, loop, name, uv, counted),
            LOOP_TIMEOUT,
        )
    except LoopTimeout:
        blocked = probe.blocked_for() if probe else LOOP_TIMEOUT
        frame = sys._current_frames().get(loop_thread_id(loop) or -1)
        stats["blocked_for"] = blocked
        stats["blocked_stack"] = tuple(stack_of(frame))
        notes.append(f"{name} blocked for {blocked:.1f} s: task rows not refreshed")
        return LoopStats(**stats), [], 0
    return LoopStats(**stats), loop_rows, matched


def _with_task_counts(node: NodeInfo, collector: Collector, session: Session) -> NodeInfo:
    """Tasks created/finished since attach and in the interval (from the step registry)."""
    registry = collector.steps.registry
    if registry is None:
        return node
    created, finished = int(registry.created), int(registry.finished + registry.abandoned)
    prev_created, prev_finished = session.prev_tasks
    session.prev_tasks = (created, finished)
    return dataclasses.replace(
        node,
        tasks_created=created - prev_created,
        tasks_finished=finished - prev_finished,
        tasks_created_total=created,
        tasks_finished_total=finished,
    )


def _sort_value(row: ProcessRow, sort: str, accumulate: bool) -> float:
    if sort == "reductions":
        v: float | None = row.reductions_total if accumulate else row.reductions
    elif sort == "time":
        v = row.time_total if accumulate else row.time
    elif sort == "mailbox":
        v = row.mailbox
    else:
        v = row.memory
    return -1.0 if v is None else float(v)


def _top(rows: list[ProcessRow], req: SnapshotRequest) -> list[ProcessRow]:
    """The top ``limit`` rows by the sort key, ties broken by TIME, then threads first.

    Threads are few and each may be where the program's CPU goes: the threads that ran in
    the interval (by CPU, the busiest first) keep up to half of the rows whatever the sort,
    no lower than the middle, so a CPU-hot thread is never pushed out or down by tasks (its
    REDS count only the queue items it took)."""

    def key(r: ProcessRow) -> tuple[float, float, int]:
        t = r.time_total if req.accumulate else r.time
        return (_sort_value(r, req.sort, req.accumulate), t or 0.0, r.kind == "thread")

    def busy(r: ProcessRow) -> float:
        return (r.time_total if req.accumulate else r.time) or 0.0

    half = req.limit // 2
    active = [r for r in rows if r.kind == "thread" and (busy(r) > 0 or r.reductions)]
    kept = heapq.nlargest(half, active, key=busy)
    ids = {id(r) for r in kept}
    rest = heapq.nlargest(req.limit - len(kept), [r for r in rows if id(r) not in ids], key=key)
    out = sorted(kept + rest, key=key, reverse=True)
    # ... and no lower than the middle of the rows: on the TUI's first screen (it fetches
    # what is visible and 10 more) and in the upper half of `vmtop top`.
    first, second = out[:half], out[half:]
    low = [r for r in second if id(r) in ids]
    if low:  # they take the places of the last rows of the first half that are not theirs
        others = [i for i, r in enumerate(first) if id(r) not in ids][-len(low) :]
        gone = set(others)
        first = [r for i, r in enumerate(first) if i not in gone] + low
        second = [out[i] for i in others] + [r for r in second if id(r) not in ids]
        out = first + second
    return out


def _loop_rows(
    collector: Collector,
    session: Session,
    req: SnapshotRequest,
    loop: Any,
    loop_name: str,
    uv: bool,
    counted: bool,
) -> tuple[list[ProcessRow], int]:
    """Runs on the loop's thread: select and describe this loop's top tasks."""
    t0 = time.perf_counter()
    try:
        return _loop_rows_inner(collector, session, req, loop, loop_name, uv, counted)
    finally:
        session.loop_time += time.perf_counter() - t0


SCAN_BATCH = 256  # tasks checked at a time for an idle wait in Queue.get (round robin)
SCAN_SECONDS = 0.002  # loop time a refresh spends on that scan


def _loop_rows_inner(
    collector: Collector,
    session: Session,
    req: SnapshotRequest,
    loop: Any,
    loop_name: str,
    uv: bool,
    counted: bool,
) -> tuple[list[ProcessRow], int]:
    steps = collector.steps
    steps.drain()
    tracker = collector.mailboxes
    pending = session.pending  # TaskStat -> [steps, s] since this client's previous snapshot

    def mine(task: Any) -> bool:
        return task is not None and task.get_loop() is loop and not task.done()

    # Consumers idle in Queue.get since before we attached: a bounded round-robin scan.
    refs = collector.task_refs()
    _scan_idle_consumers(collector, refs, mine)

    pool = _filtered(req, mine)
    matched = collector.loop_task_counts.get(id(loop), 0) if pool is None else len(pool)
    collector.memory.start()
    chosen = _chosen(collector, session, req, pool, refs, mine)
    if len(chosen) < req.limit:
        _fill_with_idle(chosen, req.limit, pool, refs, mine)

    current = _current_task(loop)
    ready = tasks.ready_owner_ids(loop)
    rows = [
        _task_row(collector, req, task, pending, loop_name, uv, counted, current, ready)
        for task in chosen
    ]
    for stat in [st for st in pending if st.task is None or st.task.get_loop() is loop]:
        del pending[stat]  # only this loop's thread adds this loop's tasks: no race
    tracker.forget_dead()
    return rows, matched


def _filtered(req: SnapshotRequest, mine: Any) -> list[Any] | None:
    """The loop's tasks whose name or coroutine matches the filter; None when no filter
    (every task of the loop, looked at only as needed)."""
    if not req.filter:
        return None
    text = req.filter
    return [
        t
        for t in deref(task_refs())  # a filter wants every task, the newest too
        if mine(t) and (text in t.get_name().lower() or text in tasks.coro_name(t).lower())
    ]


def _chosen(
    collector: Collector,
    session: Session,
    req: SnapshotRequest,
    pool: list[Any] | None,
    refs: list[Any],
    mine: Any,
) -> list[Any]:
    """The top ``req.limit`` tasks by the sort key, from ``pool`` or from the whole loop."""
    limit = req.limit
    if req.sort == "memory":
        if pool is not None:
            refs = [weakref.ref(t) for t in pool]
        chosen: list[Any] = collector.memory.leaders(refs, mine, limit)
        return chosen
    if req.sort == "mailbox":
        tracker = collector.mailboxes
        if pool is not None:
            scored = [(tracker.mailbox_of(t), t) for t in pool]
            best = heapq.nlargest(limit, scored, key=lambda x: -1 if x[0] is None else x[0])
            return [t for _, t in best]
        longest = tracker.longest(limit * 2)
        return [t for _, t in longest if hasattr(t, "get_loop") and mine(t)][:limit]
    return _busiest(collector.steps, session.pending, req, pool, mine)


def _fill_with_idle(
    chosen: list[Any], limit: int, pool: list[Any] | None, refs: list[Any], mine: Any
) -> None:
    """Fill ``chosen`` up to ``limit`` with other tasks of the loop (idle ones), unscored."""
    have = {id(t) for t in chosen}
    for t in pool if pool is not None else map(operator.call, refs):
        if len(chosen) >= limit:
            break
        if t is not None and id(t) not in have and (pool is not None or mine(t)):
            chosen.append(t)
            have.add(id(t))


def _scan_idle_consumers(collector: Collector, refs: list[Any], mine: Any) -> None:
    """Consumers suspended in Queue.get since before the attach: a round-robin scan of the
    tasks, in batches, for at most ``SCAN_SECONDS`` of loop time a refresh (at 100k tasks a
    full pass takes several refreshes; the dequeue hook finds busy consumers meanwhile)."""
    n = len(refs)
    if not n:
        return
    deadline = time.perf_counter() + SCAN_SECONDS
    start = collector.scan_cursor % n
    done = 0
    while done < n and time.perf_counter() < deadline:
        i = (start + done) % n
        batch = deref(refs[i : min(n, i + SCAN_BATCH)])
        collector.mailboxes.scan_tasks(t for t in batch if mine(t))
        done += min(SCAN_BATCH, n - i)
    collector.scan_cursor = start + done


def _busiest(
    steps: Any, pending: dict[Any, list[float]], req: SnapshotRequest, pool: Any, mine: Any
) -> list[Any]:
    """Tasks with the most steps (or time) in the interval, or since the attach."""
    idx = 0 if req.sort == "reductions" else 1
    limit = req.limit
    if req.accumulate:
        registry = steps.registry
        if registry is None:
            return []
        allowed = None if pool is None else {id(t) for t in pool}
        # The registry selects in C over every pending task; a few spare for other loops.
        stats = registry.top(limit * 2 if allowed is None else max(len(allowed), 1), idx)
        tasks = [s.task for s in stats]
        return [t for t in tasks if mine(t) and (allowed is None or id(t) in allowed)][:limit]
    # Only tasks that stepped in the interval have a non-zero figure.
    active = [(c[idx], st) for st, c in pending.items()]
    if pool is not None:
        allowed = {id(t) for t in pool}
        active = [(v, st) for v, st in active if id(st.task) in allowed]
    best = heapq.nlargest(limit * 2, active, key=_first)
    return [st.task for _, st in best if mine(st.task)][:limit]


def _first(item: tuple[float, Any]) -> float:
    return item[0]


def _task_row(
    collector: Collector,
    req: SnapshotRequest,
    task: Any,
    pending: dict[Any, list[float]],
    loop_name: str,
    uv: bool,
    counted: bool,
    current: Any,
    ready: set[int],
) -> ProcessRow:
    stat = collector.steps.stat(task)
    tracker = collector.mailboxes
    frames = tasks.chain_frames(task)
    memory = None
    if req.memory:
        roots = [q for q in (i.ref() for i in tracker.queues_of(task)) if q is not None]
        memory = collector.memory.of(task, frames, roots)
    # uvloop: only tasks created after the attach carry a counting coroutine.
    known = counted and (stat is not None or not uv)
    d = pending.get(stat) if stat is not None else None
    n = collector.task_id(task)
    note: tuple[str, ...] = ()
    if not known:
        note = (
            ("uvloop: created before the attach, steps not countable",)
            if counted
            else ("uvloop: steps not counted",)
        )
    return ProcessRow(
        key=f"task:{n}",
        kind="task",
        id=str(n),
        name=task.get_name(),
        state=tasks.task_state(task, current, ready),
        loop=loop_name,
        reductions=(int(d[0]) if d is not None else 0) if known else None,
        reductions_total=(int(stat.steps) if stat is not None else 0) if known else None,
        time=(d[1] if d is not None else 0.0) if known else None,
        time_total=(float(stat.secs) if stat is not None else 0.0) if known else None,
        mailbox=tracker.mailbox_of(task),
        memory=memory,
        current=tasks.current_location(task, frames),
        waiting_on=tasks.describe_waiter(task, frames),
        coro=tasks.coro_name(task),
        notes=note,
    )


def _current_task(loop: Any) -> Any:
    import asyncio

    try:
        return asyncio.current_task(loop)
    except Exception:
        return None


def _thread_rows(
    collector: Collector, session: Session, req: SnapshotRequest, interval: float
) -> tuple[list[ProcessRow], int]:
    frames = sys._current_frames()
    samples = sample_threads(frames)
    tracker = collector.mailboxes
    tracker.scan_threads(frames, {s.ident: s.thread for s in samples})
    tracker.forget_threads(frames)  # counts of threads that ended (their idents get reused)
    if "thread" not in req.kinds:
        return [], 0
    rows = []
    new_prev: dict[int, float] = {}
    new_gets: dict[int, int] = {}
    claimed = collector.adapters.claimed  # threads shown as a runtime's rows (Pykka actors)
    for s in samples:
        if s.ident in claimed or (req.filter and req.filter not in s.name.lower()):
            continue
        prev = session.prev_threads.get(s.ident)
        cpu = s.cpu
        if cpu is not None:
            new_prev[s.ident] = cpu
        delta = None if cpu is None else cpu - (prev if prev is not None else 0.0)
        # Reductions: queue.Queue items taken (since the attach; per interval since this
        # client's previous refresh, or since the attach for a new client's first one).
        gets = tracker.thread_gets(s.ident)
        if gets is not None:
            new_gets[s.ident] = gets
        prev_gets = session.prev_thread_gets.get(s.ident, 0)
        gets_delta = None if gets is None else max(0, gets - prev_gets)
        mb = tracker.mailbox_of(s.thread)
        memory = None
        if req.memory and s.frame is not None and s.ident != threading.get_ident():
            try:
                memory = estimate([], _frames_of(s.frame))
            except Exception:
                memory = None
        rows.append(
            ProcessRow(
                key=f"thread:{s.native_id or s.ident}",
                kind="thread",
                id=str(s.native_id or s.ident),
                name=s.name,
                state=s.state,
                reductions=gets_delta,
                reductions_total=gets,
                time=delta,
                time_total=cpu,
                mailbox=mb,
                memory=memory,
                current=s.current,
                waiting_on=s.waiting_on,
                coro="",
                notes=("reductions = queue.Queue items taken; time = thread CPU seconds",),
            )
        )
    session.prev_threads = new_prev
    session.prev_thread_gets = new_gets
    return rows, len(rows)


def _frames_of(frame: Any, limit: int = 32) -> list[Any]:
    out: list[Any] = []
    while frame is not None and len(out) < limit:
        out.append(frame)
        frame = frame.f_back
    return out


def _queue_rows(collector: Collector, req: SnapshotRequest) -> list[ProcessRow]:
    if "queue" not in req.kinds:
        return []
    rows = []
    for info, consumers in collector.mailboxes.shared():
        q = info.ref()
        if q is None:
            continue
        names = [_process_name(c) for c in consumers]
        name = f"{type(q).__name__}#{info.seq} <- " + ", ".join(sorted(names)[:4])
        if len(names) > 4:
            name += f" +{len(names) - 4}"
        if req.filter and req.filter not in name.lower():
            continue
        memory = None
        if req.memory:
            try:
                memory = estimate([q], [])
            except Exception:
                memory = None
        rows.append(
            ProcessRow(
                key=f"queue:{info.seq}",
                kind="queue",
                id=f"q{info.seq}",
                name=name,
                state="shared",
                mailbox=queue_length(q),
                memory=memory,
                consumers=len(consumers),
                putters=blocked_putters(q),
                notes=("shared queue: several consumers",),
            )
        )
    return rows


__all__ = ["Session", "SnapshotRequest", "take_snapshot", "__version__"]


def _process_name(obj: Any) -> str:
    get_name = getattr(obj, "get_name", None)
    return str(get_name() if get_name is not None else getattr(obj, "name", "?"))
