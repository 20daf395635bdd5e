"""Snapshot -> what the TUI draws: columns, cells, colours, header lines, history.

Pure data and functions (Rich style strings at most, no Textual), so every rule here is unit
tested without a terminal: ``tests/test_tui_viewmodel.py``.

What stands out, and why:

* **hog** — a task (or thread) whose ``time`` in the last interval is more than half the
  interval: it holds the event loop (or the GIL) for most of the time. 20-50 % is **busy**.
* **grow** — a mailbox longer than in the previous snapshot of the same process; ``↑`` marks
  it. Growing and at least ``BIG_MAILBOX`` long is **flood**.
* states: ``running`` green, ``ready`` cyan (in the run queue), ``blocked`` red; a value that
  cannot be measured is "–", dimmed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from profilers import units
from vmtop.records import KINDS, SORT_KEYS, GroupRow, NodeInfo, ProcessRow, Snapshot

HOG_SHARE = 0.5
BUSY_SHARE = 0.2
BIG_MAILBOX = 1000
HISTORY = 60  # points kept per series (one per snapshot)
MAX_KEYS = 5000  # processes whose history is kept; the least recently seen go first
LIMIT_MARGIN = 10  # rows fetched beyond the visible ones
MIN_LIMIT = 20
MAX_LIMIT = 2000
INTERVALS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

STYLES = {
    "hog": "bold red",
    "busy": "yellow",
    "grow": "bold yellow",
    "flood": "bold red",
    "none": "dim",
    "zero": "dim",
    "running": "green",
    "ready": "cyan",
    "blocked": "bold red",
    "done": "dim",
    "thread": "magenta",
    "queue": "blue",
    "group": "green",
    "sorted": "bold",
}

KIND_SETS: dict[str, tuple[str, ...]] = {
    "all": KINDS,
    "tasks": ("task",),
    "threads": ("thread",),
    "queues": ("queue",),
}


# -- columns -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    narrow: int  # width at 80 columns
    wide: int  # width from 140 columns on; 0 = takes the rest
    right: bool = False
    agent_sort: bool = False  # the agent selects the top N by this key

    @property
    def rest(self) -> bool:
        return self.wide == 0


COLUMNS: tuple[Column, ...] = (
    Column("id", "ID", 7, 9),
    Column("name", "NAME", 14, 26),
    Column("reductions", "REDS", 6, 9, right=True, agent_sort=True),
    Column("time", "TIME", 7, 9, right=True, agent_sort=True),
    Column("mailbox", "MBOX", 6, 8, right=True, agent_sort=True),
    Column("memory", "MEMORY", 9, 10, right=True, agent_sort=True),
    Column("state", "STATE", 7, 8),
    Column("current", "CURRENT FUNCTION", 12, 0),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)
SORT_CYCLE = COLUMN_KEYS  # `<` / `>` walk through every column
GAP = 1  # blank cells between columns (drawn by the table as the cell's leading space)


def column_widths(total: int) -> dict[str, int]:
    """Column widths for a table ``total`` cells wide (scrollbar included); the last column
    takes what is left. Between 80 and 140 columns the fixed ones grow linearly."""
    t = min(1.0, max(0.0, (total - 80) / 60))
    widths = {}
    for c in COLUMNS:
        if not c.rest:
            widths[c.key] = round(c.narrow + (c.wide - c.narrow) * t)
    used = sum(w + GAP for w in widths.values()) + GAP + 2  # + vertical scrollbar
    widths["current"] = max(COLUMNS[-1].narrow, total - used)
    return widths


# -- view state ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Request:
    """The arguments of one ``source.snapshot(...)`` call."""

    sort: str = "reductions"
    limit: int = 50
    filter: str = ""
    accumulate: bool = False
    kinds: tuple[str, ...] = KINDS
    groups: int = 20  # coroutine groups asked for (the group view asks for a screenful)

    def kwargs(self) -> dict[str, object]:
        return {
            "sort": self.sort,
            "limit": self.limit,
            "filter": self.filter,
            "accumulate": self.accumulate,
            "kinds": self.kinds,
            "groups": self.groups,
        }


@dataclass(slots=True)
class ViewState:
    """What the user chose: sort, order, toggles. ``sort`` is the agent's selection key; when
    the user sorts by a text column (``order``) the rows the agent selected are re-ordered."""

    sort: str = "reductions"
    order: str | None = None  # id | name | state | current: client-side order of the rows
    accumulate: bool = False
    kinds: str = "all"
    filter: str = ""
    paused: bool = False
    interval: float = 1.0
    limit: int = 50
    groups: bool = False  # show coroutine groups (finished tasks folded) instead of processes

    def sort_column(self) -> str:
        return self.order or self.sort

    def set_sort(self, column: str) -> None:
        if column in SORT_KEYS:
            self.sort, self.order = column, None
        elif column in COLUMN_KEYS:
            self.order = column
        else:
            raise ValueError(f"unknown column {column!r}")

    def cycle_sort(self, step: int) -> str:
        i = SORT_CYCLE.index(self.sort_column())
        column = SORT_CYCLE[(i + step) % len(SORT_CYCLE)]
        self.set_sort(column)
        return column

    def change_interval(self, step: int) -> float:
        i = min(range(len(INTERVALS)), key=lambda j: abs(INTERVALS[j] - self.interval))
        self.interval = INTERVALS[max(0, min(len(INTERVALS) - 1, i + step))]
        return self.interval

    def request(self) -> Request:
        return Request(
            sort=self.sort,
            limit=self.limit,
            filter=self.filter,
            accumulate=self.accumulate,
            kinds=KIND_SETS[self.kinds],
            groups=self.limit if self.groups else 20,
        )


def fetch_limit(visible_rows: int, first_visible: int = 0) -> int:
    """Rows to ask the agent for: what is on screen (and above it), plus a margin."""
    return max(MIN_LIMIT, min(MAX_LIMIT, first_visible + visible_rows + LIMIT_MARGIN))


# -- history ---------------------------------------------------------------------------------
@dataclass(slots=True)
class ProcessHistory:
    reductions: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY))
    time: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY))
    mailbox: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY))
    last_mailbox: int | None = None  # in the previous distinct snapshot
    seen: int = 0


@dataclass(frozen=True, slots=True)
class NodePoint:
    rss: float | None
    lag: float | None  # worst p99 over the loops, seconds
    reductions_per_s: float | None
    reductions_partial: bool  # the rows were cut: the figure is a lower bound
    gc_per_s: float | None  # seconds of GC pause per second


class History:
    """Ring buffers, one point per distinct snapshot (a repeated ``taken_at`` adds nothing):
    the node series for the header sparklines and per-process series for the detail screen.
    Keeps at most ``max_keys`` processes, dropping the least recently seen."""

    def __init__(self, size: int = HISTORY, max_keys: int = MAX_KEYS) -> None:
        self.size = size
        self.max_keys = max_keys
        self.node: deque[NodePoint] = deque(maxlen=size)
        self.processes: dict[str, ProcessHistory] = {}
        self.previous_mailbox: dict[str, int | None] = {}
        self.taken_at: float | None = None
        self.count = 0
        self._gc_total: float | None = None

    def push(self, snap: Snapshot) -> bool:
        """Record ``snap``; return False (and record nothing) when it repeats the last one."""
        if self.taken_at is not None and snap.taken_at == self.taken_at:
            return False
        self.taken_at = snap.taken_at
        self.count += 1
        self.previous_mailbox = {k: h.last_mailbox for k, h in self.processes.items()}
        self.node.append(self._node_point(snap))
        for row in snap.rows:
            h = self.processes.pop(row.key, None) or ProcessHistory(
                deque(maxlen=self.size), deque(maxlen=self.size), deque(maxlen=self.size)
            )
            self.processes[row.key] = h  # most recently seen last
            h.reductions.append(row.reductions)
            h.time.append(row.time)
            h.mailbox.append(row.mailbox)
            h.last_mailbox = row.mailbox
            h.seen = self.count
        while len(self.processes) > self.max_keys:
            del self.processes[next(iter(self.processes))]
        return True

    def _node_point(self, snap: Snapshot) -> NodePoint:
        node = snap.node
        lags = [x.lag_p99 for x in node.loops if x.lag_p99 is not None]
        reds = [r.reductions for r in snap.rows if r.kind == "task" and r.reductions is not None]
        per_s = sum(reds) / snap.interval if reds and snap.interval > 0 else None
        gc_total = sum(g.pause_total for g in node.gc) if node.gc else None
        gc_per_s = None
        if gc_total is not None and self._gc_total is not None and snap.interval > 0:
            gc_per_s = max(0.0, gc_total - self._gc_total) / snap.interval
        self._gc_total = gc_total
        return NodePoint(
            rss=float(node.rss) if node.rss is not None else None,
            lag=max(lags) if lags else None,
            reductions_per_s=per_s,
            reductions_partial=snap.total_rows > len(snap.rows),
            gc_per_s=gc_per_s,
        )

    def mailbox_before(self, key: str) -> int | None:
        return self.previous_mailbox.get(key)

    def of(self, key: str) -> ProcessHistory | None:
        return self.processes.get(key)


# -- cells -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    style: str = ""


@dataclass(frozen=True, slots=True)
class RowView:
    key: str
    kind: str
    name: str
    cells: tuple[Cell, ...]  # in COLUMNS order
    marks: frozenset[str] = frozenset()  # hog, busy, grow, flood


def _share(row: ProcessRow, interval: float) -> float | None:
    if row.time is None or interval <= 0:
        return None
    return row.time / interval


def display_id(row: ProcessRow) -> str:
    return f"T{row.id}" if row.kind == "thread" else row.id


def current_text(row: ProcessRow) -> str:
    if row.kind == "queue":
        consumers = units.count(row.consumers)
        return f"shared queue: {consumers} consumers, {units.count(row.putters)} blocked putters"
    text = str(row.current) if row.current else ""
    if row.waiting_on:
        text = f"{text} ⟵ {row.waiting_on}" if text else row.waiting_on
    return text or units.DASH


def row_view(
    row: ProcessRow, interval: float, accumulate: bool, mailbox_before: int | None = None
) -> RowView:
    marks: set[str] = set()
    share = _share(row, interval)
    if share is not None and share > HOG_SHARE:
        marks.add("hog")
    elif share is not None and share > BUSY_SHARE:
        marks.add("busy")
    if row.mailbox is not None and mailbox_before is not None and row.mailbox > mailbox_before:
        marks.add("flood" if row.mailbox >= BIG_MAILBOX else "grow")

    def num(text: str, value: float | None, style: str = "") -> Cell:
        if value is None:
            return Cell(units.DASH, STYLES["none"])
        if value == 0 and not style:
            return Cell(text, STYLES["zero"])
        return Cell(text, style)

    reds = row.reductions_total if accumulate else row.reductions
    secs = row.time_total if accumulate else row.time
    load = "hog" if "hog" in marks else "busy" if "busy" in marks else ""
    grow = "flood" if "flood" in marks else "grow" if "grow" in marks else ""
    mailbox = units.count(row.mailbox) + ("↑" if grow else "")
    cells = (
        Cell(display_id(row), STYLES.get(row.kind, "")),
        Cell(row.name, STYLES[load] if load else ""),
        num(units.count(reds), reds),
        num(units.seconds(secs), secs, STYLES[load] if load else ""),
        num(mailbox, row.mailbox, STYLES[grow] if grow else ""),
        num(units.format_bytes(row.memory), row.memory),
        Cell(row.state, STYLES.get(row.state, "")),
        Cell(current_text(row), "dim" if row.kind == "queue" else ""),
    )
    return RowView(row.key, row.kind, row.name, cells, frozenset(marks))


_TEXT_ORDER: dict[str, Callable[[ProcessRow], Any]] = {
    "id": lambda r: (KINDS.index(r.kind) if r.kind in KINDS else 9, r.id.zfill(12)),
    "name": lambda r: r.name.lower(),
    "state": lambda r: r.state,
    "current": lambda r: current_text(r),
}


def ordered_rows(rows: Sequence[ProcessRow], order: str | None) -> list[ProcessRow]:
    """The agent's order, or the selected rows re-ordered by a text column."""
    if order is None or order not in _TEXT_ORDER:
        return list(rows)
    key = _TEXT_ORDER[order]
    return sorted(rows, key=key)


def group_current(group: GroupRow, interval: float, accumulate: bool) -> str:
    """What a group row says where a process says its current function."""
    where = f"{group.file.rsplit('/', 1)[-1]}:{group.line}" if group.file else ""
    if accumulate:
        flow = (
            f"{units.count(group.started_total)} started, {units.count(group.finished_total)} done"
        )
    else:
        started = group.started / interval if interval > 0 else 0.0
        done = group.finished / interval if interval > 0 else 0.0
        flow = f"{started:,.0f}/s started, {done:,.0f}/s done"
    failed = group.failed + group.cancelled
    if failed:
        flow += f" ({units.count(failed)} failed/cancelled)"
    life = f"life p50 {units.seconds(group.lifetime_p50)} p99 {units.seconds(group.lifetime_p99)}"
    return "  ".join(x for x in (flow, life, where) if x)


def group_view(group: GroupRow, interval: float, accumulate: bool) -> RowView:
    """A coroutine group in the process table's columns: its tasks' steps and time, live
    tasks as its state, and started/done/lifetimes where the current function goes."""
    reds = group.reductions_total if accumulate else group.reductions
    secs = group.time_total if accumulate else group.time
    share = secs / interval if secs is not None and interval > 0 and not accumulate else None
    load = "hog" if share is not None and share > HOG_SHARE else ""
    if not load and share is not None and share > BUSY_SHARE:
        load = "busy"
    cells = (
        Cell("grp", STYLES.get("group", "")),
        Cell(group.coro, STYLES[load] if load else ""),
        Cell(units.count(reds), "" if reds else STYLES["zero"]),
        Cell(units.seconds(secs), STYLES[load] if load else ""),
        Cell(units.DASH, STYLES["none"]),
        Cell(units.DASH, STYLES["none"]),
        Cell(f"{group.live} live", ""),
        Cell(group_current(group, interval, accumulate), ""),
    )
    return RowView(group.key, "group", group.coro, cells, frozenset({load} - {""}))


def table_rows(snap: Snapshot, state: ViewState, history: History | None = None) -> list[RowView]:
    if state.groups:
        return [group_view(g, snap.interval, snap.accumulate) for g in snap.groups]
    rows = ordered_rows(snap.rows, state.order)
    return [
        row_view(
            r,
            snap.interval,
            snap.accumulate,
            history.mailbox_before(r.key) if history is not None else None,
        )
        for r in rows
    ]


def column_label(column: Column, state: ViewState) -> str:
    label = column.label
    if column.key == "reductions" and state.accumulate:
        label = "REDS∑"
    elif column.key == "time" and state.accumulate:
        label = "TIME∑"
    if column.key == state.sort_column():
        label += "▼" if column.agent_sort else "▲"
    return label


# -- header ----------------------------------------------------------------------------------
SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: Iterable[float | None], width: int, relative: bool = False) -> str:
    """The last ``width`` values as block characters (blank = not measured), scaled from 0
    to their maximum, or from their minimum (``relative``: for levels such as RSS)."""
    points = list(values)[-width:] if width > 0 else []
    known = [v for v in points if v is not None]
    top = max(known) if known else 0.0
    bottom = min(known) if known and relative else 0.0
    span = top - bottom
    out = []
    for v in points:
        if v is None:
            out.append(" ")
        elif span <= 0:
            out.append(SPARK[0])
        else:
            level = (v - bottom) / span * (len(SPARK) - 1)
            out.append(SPARK[min(len(SPARK) - 1, int(level + 0.5))])
    return "".join(out).rjust(width)


def pack(parts: Sequence[str], width: int, sep: str = "  ") -> list[str]:
    """Greedy line filling: the parts in order, as few lines of at most ``width`` as fit."""
    lines: list[str] = []
    line = ""
    for part in parts:
        if not line:
            line = part
        elif len(line) + len(sep) + len(part) <= width:
            line += sep + part
        else:
            lines.append(line)
            line = part
    if line:
        lines.append(line)
    return [units.truncate(x, width) for x in lines]


def node_parts(node: NodeInfo, clock: str = "", interval: float = 0.0) -> list[str]:
    ready = sum(loop.ready for loop in node.loops)
    parts = [
        f"up {units.uptime(node.uptime)}",
        f"cpu {units.percent(node.cpu_percent)}",
        f"rss {units.format_bytes(node.rss)}",
        f"tasks {node.tasks}",
        f"threads {node.threads}",
        f"run queue {ready if node.loops else units.DASH}",
    ]
    if node.tasks_created is not None and interval > 0:
        parts.append(
            f"tasks +{node.tasks_created / interval:,.0f}/s -{(node.tasks_finished or 0) / interval:,.0f}/s"
        )
    if clock:
        parts.append(clock)
    return parts


def lag_parts(node: NodeInfo) -> list[str]:
    out = []
    for loop in node.loops[:3]:
        text = (
            f"lag {units.seconds(loop.lag_p50)}/{units.seconds(loop.lag_p99)}/{units.seconds(loop.lag_max)}"
            " p50/p99/max"
        )
        if len(node.loops) > 1:
            text += f" ({loop.name})"
        out.append(text)
    if len(node.loops) > 3:
        out.append(f"+{len(node.loops) - 3} loops")
    if not node.loops:
        out.append(f"lag {units.DASH} (no event loop)")
    return out


def gc_parts(node: NodeInfo) -> list[str]:
    if not node.gc:
        return [f"gc {units.DASH}"]
    parts = [
        f"gc{i} {units.count(g.collections)}× {units.seconds(g.pause_total)}"
        + (f" max {units.seconds(g.pause_max)}" if g.collections else "")
        for i, g in enumerate(node.gc)
    ]
    if node.gc_share is not None:
        parts.append(f"in gc {units.percent(node.gc_share * 100)}")
    return parts


def blocked_lines(snap: Snapshot) -> list[str]:
    out = []
    for loop in snap.node.loops:
        if loop.blocked_for:
            where = f" in {loop.blocked_stack[-1]}" if loop.blocked_stack else ""
            out.append(f"{loop.name} BLOCKED for {units.seconds(loop.blocked_for)}{where}")
    return out


@dataclass(frozen=True, slots=True)
class Spark:
    label: str
    value: str
    line: str


def sparks(history: History, width: int) -> list[Spark]:
    """The four header graphs: RSS, loop lag (p99), reductions/s, share of time in GC pauses."""
    pts = list(history.node)
    rss = lag = reds = gc = units.DASH
    if pts:
        last = pts[-1]
        rss = units.format_bytes(last.rss)
        lag = units.seconds(last.lag)
        if last.reductions_per_s is not None:
            reds = ("≥" if last.reductions_partial else "") + units.count(last.reductions_per_s)
        if last.gc_per_s is not None:
            gc = units.percent(last.gc_per_s * 100)
    return [
        Spark("rss", rss, sparkline([p.rss for p in pts], width, relative=True)),
        Spark("lag", lag, sparkline([p.lag for p in pts], width)),
        Spark("reds/s", reds, sparkline([p.reductions_per_s for p in pts], width)),
        Spark("gc", gc, sparkline([p.gc_per_s for p in pts], width)),
    ]


def status_text(snap: Snapshot | None, state: ViewState) -> str:
    parts = []
    if snap is not None:
        mode = "totals since attach" if snap.accumulate else f"per {snap.interval:.2f} s"
        parts.append(mode)
        if state.groups:
            parts.append(f"{len(snap.groups)} coroutine groups")
        else:
            parts.append(f"{len(snap.rows)}/{snap.total_rows} rows")
    column = state.sort_column()
    sort = f"sort {column}"
    if state.order is not None:
        sort += f" (of the top by {state.sort})"
    parts.append(sort)
    parts.append(state.kinds)
    if state.filter:
        parts.append(f"filter {state.filter!r}")
    parts.append(f"every {state.interval:g} s")
    if state.paused:
        parts.append("PAUSED")
    return " · ".join(parts)


def default_clock(taken_at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(taken_at))
