"""The snapshot schema: immutable records that the agent builds and every view reads.

One schema feeds the TUI, ``vmtop top`` (text and ``--json``) and any exporter. Records are
plain frozen dataclasses that round-trip through JSON (``to_dict`` / ``from_dict``). A value
that cannot be measured is ``None`` and shows as "–", never 0; a row says why in ``notes``.

``SCHEMA_VERSION`` changes when a field changes meaning or disappears; new optional fields do
not change it. ``vmtop top --json`` prints ``Snapshot.to_dict()``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, TypeVar

SCHEMA_VERSION = 1

KINDS = ("task", "thread", "queue")
SORT_KEYS = ("reductions", "time", "mailbox", "memory")

T = TypeVar("T")


def _from_dict(cls: type[T], data: dict[str, Any]) -> T:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    """``dataclasses.asdict`` for these records, without its deep copies: the same dicts,
    tuples and lists (tests/test_records.py checks it equal to ``asdict``). The agent encodes
    a snapshot on its thread at every refresh, and ``asdict`` of a top-50 snapshot took
    milliseconds of the target's CPU (every row converted twice: once inside the snapshot's
    ``asdict``, once by its own ``to_dict``)."""
    cls = type(value)
    if cls in (str, int, float, bool) or value is None:
        return value
    names = _FIELD_NAMES.get(cls)
    if names is None and is_dataclass(value):
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(value))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if cls is tuple or cls is list:
        return cls(_plain(v) for v in value)
    if cls is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    return copy.deepcopy(value)  # what asdict does with any other value


@dataclass(frozen=True, slots=True)
class Location:
    """Where a process is now: innermost frame of its await chain or thread stack."""

    function: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.function} ({self.file.rsplit('/', 1)[-1]}:{self.line})"


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One lightweight process: an asyncio task, a thread, or a shared queue.

    Units: ``reductions`` = task steps (tasks), items taken from ``queue.Queue`` (threads);
    ``time`` = seconds of wall time inside the task's steps (tasks) or thread CPU seconds
    (threads); ``mailbox`` = items waiting in the queue this process consumes; ``memory`` =
    estimated bytes (see docs/columns.md). Counters are per interval unless the snapshot says
    ``accumulate``; ``*_total`` fields are always totals since attach.
    """

    key: str  # "task:<n>", "thread:<native id>", "queue:<n>": stable while the process lives
    kind: str
    id: str  # short display id
    name: str
    state: str  # running | ready | waiting | done | blocked | sleeping | idle | -
    loop: str = ""  # "loop-<thread name>" for tasks; "" otherwise
    reductions: int | None = None
    reductions_total: int | None = None
    time: float | None = None
    time_total: float | None = None
    mailbox: int | None = None
    memory: int | None = None
    current: Location | None = None
    waiting_on: str = ""
    coro: str = ""
    consumers: int | None = None  # queue rows: consumers seen
    putters: int | None = None  # queue rows: blocked putters
    notes: tuple[str, ...] = ()
    runtime: str = ""  # the adapter that made the row ("pykka", "trio"); "" asyncio/threads
    parent: str = ""  # Trio: name of the task whose nursery holds this task

    def to_dict(self) -> dict[str, Any]:
        d = _plain(self)
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessRow:
        d = dict(data)
        if d.get("current"):
            d["current"] = Location(**d["current"])
        d["notes"] = tuple(d.get("notes") or ())
        return _from_dict(cls, d)


@dataclass(frozen=True, slots=True)
class GroupRow:
    """The tasks of one coroutine function, live and finished: a web service's handler.

    Task-per-request servers make thousands of short tasks a second; a finished task is not a
    row, it is folded into its group (keyed by the coroutine's code object). Per-interval
    figures cover the snapshot's interval; ``*_total`` fields count since attach. Units:
    ``reductions`` = task steps, ``time`` = seconds inside steps, ``lifetime_*`` = seconds from
    a task's creation to its completion, over the tasks that finished in the interval (``None``
    when none did, or when their creation was not seen: tasks older than the attach).
    """

    key: str  # "group:<qualname>@<file>:<line>"
    coro: str  # the coroutine function's qualified name
    file: str
    line: int
    loop: str = ""
    live: int = 0  # tasks of this group alive now (counted ones)
    started: int = 0  # tasks created in the interval
    finished: int = 0  # tasks that finished in the interval (cancelled and failed included)
    cancelled: int = 0  # of which cancelled
    failed: int = 0  # of which ended with an exception
    started_total: int = 0
    finished_total: int = 0
    reductions: int | None = None
    reductions_total: int | None = None
    time: float | None = None
    time_total: float | None = None
    lifetime_p50: float | None = None
    lifetime_p99: float | None = None
    lifetime_max: float | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = _plain(self)
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupRow:
        d = dict(data)
        d["notes"] = tuple(d.get("notes") or ())
        return _from_dict(cls, d)


@dataclass(frozen=True, slots=True)
class LoopStats:
    """One running event loop: its ready queue and lag probe figures (seconds)."""

    name: str
    thread: str
    thread_id: int
    tasks: int
    ready: int
    lag_p50: float | None = None
    lag_p99: float | None = None
    lag_max: float | None = None
    lag_max_total: float | None = None
    blocked_for: float | None = None  # set when the loop did not answer the snapshot in time
    blocked_stack: tuple[Location, ...] = ()
    steps_counted: bool = True
    note: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopStats:
        d = dict(data)
        d["blocked_stack"] = tuple(Location(**x) for x in d.get("blocked_stack") or ())
        return _from_dict(cls, d)


@dataclass(frozen=True, slots=True)
class GenGC:
    collections: int
    collected: int
    uncollectable: int
    pause_total: float
    pause_max: float
    pause_p50: float | None = None
    pause_p99: float | None = None


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """The node header: the target process as a whole."""

    pid: int
    argv: tuple[str, ...]
    python: str
    implementation: str
    uptime: float
    cpu_percent: float | None
    rss: int | None
    threads: int
    tasks: int
    loops: tuple[LoopStats, ...] = ()
    gc: tuple[GenGC, ...] = ()
    gc_share: float | None = None
    tracemalloc: bool = False
    tracemalloc_bytes: int | None = None
    agent_version: str = ""
    attached_for: float = 0.0
    clients: int = 0
    dropped_frames: int = 0
    tasks_created: int | None = None  # tasks created in the interval (None: not counted)
    tasks_finished: int | None = None  # tasks finished in the interval
    tasks_created_total: int | None = None  # since attach
    tasks_finished_total: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeInfo:
        d = dict(data)
        d["argv"] = tuple(d.get("argv") or ())
        d["loops"] = tuple(LoopStats.from_dict(x) for x in d.get("loops") or ())
        d["gc"] = tuple(GenGC(**x) for x in d.get("gc") or ())
        return _from_dict(cls, d)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One answer to a ``snapshot`` request: the node and the selected rows, in order."""

    node: NodeInfo
    rows: tuple[ProcessRow, ...]
    sort: str
    accumulate: bool
    interval: float  # seconds covered by per-interval figures
    total_rows: int  # rows that matched before the top-N cut
    taken_at: float  # target's time.time()
    cost: float  # seconds from request to answer, waiting for busy loops included
    loop_time: float = 0.0  # seconds the loops were held by the snapshot (what the target paid)
    schema: int = SCHEMA_VERSION
    notes: tuple[str, ...] = field(default=())
    groups: tuple[GroupRow, ...] = ()  # coroutine groups, sorted like the rows

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for name in _SNAPSHOT_FIELDS:  # in field order, as asdict gives them
            if name == "rows":
                d[name] = [r.to_dict() for r in self.rows]
            elif name == "groups":
                d[name] = [g.to_dict() for g in self.groups]
            else:
                d[name] = _plain(getattr(self, name))
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        d = dict(data)
        d["node"] = NodeInfo.from_dict(d["node"])
        d["rows"] = tuple(ProcessRow.from_dict(r) for r in d.get("rows") or ())
        d["groups"] = tuple(GroupRow.from_dict(g) for g in d.get("groups") or ())
        d["notes"] = tuple(d.get("notes") or ())
        return _from_dict(cls, d)


_SNAPSHOT_FIELDS = tuple(f.name for f in fields(Snapshot))
