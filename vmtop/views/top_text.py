"""``vmtop top`` text output: an etop-like header and one line per process."""

from __future__ import annotations

import time

from profilers import units
from vmtop.records import GroupRow, NodeInfo, ProcessRow, Snapshot

COLUMNS = [
    ("ID", 8, "<"),
    ("NAME", 22, "<"),
    ("KIND", 6, "<"),
    ("REDS", 8, ">"),
    ("TIME", 9, ">"),
    ("MAILBOX", 7, ">"),
    ("MEMORY", 10, ">"),
    ("STATE", 8, "<"),
    ("CURRENT FUNCTION", 0, "<"),
]


def header_lines(node: NodeInfo) -> list[str]:
    lines = [
        f"vmtop — pid {node.pid}  {node.implementation} {node.python}  up {units.uptime(node.uptime)}"
        f"  cpu {units.percent(node.cpu_percent)}  rss {units.format_bytes(node.rss)}"
        f"  {time.strftime('%H:%M:%S')}",
        "argv: " + units.truncate(" ".join(node.argv), 100),
    ]
    ready = sum(loop.ready for loop in node.loops)
    parts = [
        f"tasks {node.tasks}",
        f"threads {node.threads}",
        f"loops {len(node.loops)}",
        f"run queue {ready}",
    ]
    for loop in node.loops:
        lag = f"lag p50 {units.seconds(loop.lag_p50)} p99 {units.seconds(loop.lag_p99)} max {units.seconds(loop.lag_max)}"
        if loop.blocked_for:
            lag += f"  BLOCKED for {units.seconds(loop.blocked_for)}"
        parts.append(f"{loop.name}: {lag}")
    lines.append("  ".join(parts))
    if node.gc:
        gc = "  ".join(
            f"gen{i} {g.collections}× {units.seconds(g.pause_total)} (max {units.seconds(g.pause_max)})"
            for i, g in enumerate(node.gc)
        )
        share = (
            f"  in gc {units.percent(node.gc_share * 100 if node.gc_share is not None else None)}"
        )
        lines.append(f"gc: {gc}{share}")
    else:
        lines.append("gc: –")
    tm = f"on, {units.format_bytes(node.tracemalloc_bytes)} traced" if node.tracemalloc else "off"
    lines.append(f"tracemalloc {tm}")
    return lines


def row_cells(row: ProcessRow, accumulate: bool) -> list[str]:
    reds = row.reductions_total if accumulate else row.reductions
    secs = row.time_total if accumulate else row.time
    current = str(row.current) if row.current else ""
    if row.waiting_on:
        current = f"{current} ⟵ {row.waiting_on}" if current else row.waiting_on
    if row.kind == "queue":
        current = f"{row.consumers} consumers, {row.putters} blocked putters"
    return [
        row.id,
        row.name,
        row.kind,
        units.count(reds),
        units.seconds(secs),
        units.count(row.mailbox),
        units.format_bytes(row.memory),
        row.state,
        current,
    ]


GROUP_COLUMNS = [
    ("COROUTINE", 30, "<"),
    ("LIVE", 6, ">"),
    ("STARTED", 8, ">"),
    ("DONE", 8, ">"),
    ("FAILED", 6, ">"),
    ("REDS", 8, ">"),
    ("TIME", 9, ">"),
    ("LIFE p50", 9, ">"),
    ("p99", 9, ">"),
    ("WHERE", 0, "<"),
]


def group_cells(group: GroupRow, accumulate: bool) -> list[str]:
    """One coroutine group: tasks started and done in the interval (totals: since attach)."""
    started = group.started_total if accumulate else group.started
    done = group.finished_total if accumulate else group.finished
    where = f"{group.file.rsplit('/', 1)[-1]}:{group.line}" if group.file else ""
    return [
        group.coro,
        units.count(group.live),
        units.count(started),
        units.count(done),
        units.count(group.failed + group.cancelled),
        units.count(group.reductions_total if accumulate else group.reductions),
        units.seconds(group.time_total if accumulate else group.time),
        units.seconds(group.lifetime_p50),
        units.seconds(group.lifetime_p99),
        where,
    ]


def task_rate_line(node: NodeInfo, interval: float) -> str | None:
    """Tasks created and finished per second (None when the agent does not count them)."""
    if node.tasks_created is None or node.tasks_finished is None or interval <= 0:
        return None
    return (
        f"tasks created {node.tasks_created / interval:,.0f}/s"
        f"  finished {node.tasks_finished / interval:,.0f}/s"
        f"  (since attach {units.count(node.tasks_created_total)}"
        f" / {units.count(node.tasks_finished_total)})"
    )


def group_lines(snapshot: Snapshot, width: int) -> list[str]:
    if not snapshot.groups:
        return []
    cells = [group_cells(g, snapshot.accumulate) for g in snapshot.groups]
    return ["", "tasks by coroutine (finished tasks fold into their group)"] + table(
        GROUP_COLUMNS, cells, width
    )


def render(snapshot: Snapshot, width: int = 132, groups_only: bool = False) -> str:
    lines = header_lines(snapshot.node)
    mode = (
        "totals since attach" if snapshot.accumulate else f"per {snapshot.interval:.2f} s interval"
    )
    lines.append(
        f"{mode}  sorted by {snapshot.sort}  {len(snapshot.rows)} of {snapshot.total_rows} rows"
        f"  (loop time {units.seconds(snapshot.loop_time)})"
    )
    rates = task_rate_line(snapshot.node, snapshot.interval)
    if rates:
        lines.append(rates)
    lines.extend(f"note: {n}" for n in snapshot.notes)
    if not groups_only:
        lines.append("")
        cells = [row_cells(r, snapshot.accumulate) for r in snapshot.rows]
        lines.extend(table(COLUMNS, cells, width))
    lines.extend(group_lines(snapshot, width))
    return "\n".join(lines) + "\n"


def table(columns: list[tuple[str, int, str]], cells: list[list[str]], width: int) -> list[str]:
    """Heading, rule and one line per row; the width-0 column takes what is left."""
    fixed = sum(w + 1 for _, w, _ in columns if w)
    last = max(20, width - fixed)
    lines = [" ".join(f"{name:{align}{w or last}}" for name, w, align in columns).rstrip()]
    lines.append("-" * min(width, fixed + last))
    for row in cells:
        out = []
        for (_, w, align), cell in zip(columns, row, strict=True):
            w = w or last
            out.append(f"{units.truncate(cell, w):{align}{w}}")
        lines.append(" ".join(out).rstrip())
    return lines
