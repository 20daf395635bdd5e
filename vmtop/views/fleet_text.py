"""``vmtop top PID --subprocesses`` text: a process table (one line per process of the tree,
workers under their parent), then the rows of all of them merged, each with its pid."""

from __future__ import annotations

import time

from profilers import units
from vmtop.fleet.multi import FleetSnapshot
from vmtop.records import Snapshot
from vmtop.views.top_text import COLUMNS, GROUP_COLUMNS, group_cells, row_cells, table

PROCESS_COLUMNS = [
    ("PID", 10, "<"),
    ("PPID", 7, ">"),
    ("CPU", 6, ">"),
    ("RSS", 10, ">"),
    ("TASKS", 6, ">"),
    ("THR", 4, ">"),
    ("RUNQ", 5, ">"),
    ("LAG p99", 8, ">"),
    ("GC", 8, ">"),
    ("ARGV", 0, "<"),
]
ROW_COLUMNS = [("PID", 7, "<"), *COLUMNS]
GROUP_ROW_COLUMNS = [("PID", 7, "<"), *GROUP_COLUMNS]


def process_cells(snap: Snapshot, ppid: int, root: int) -> list[str]:
    node = snap.node
    p99 = [loop.lag_p99 for loop in node.loops if loop.lag_p99 is not None]
    gc = sum(g.pause_total for g in node.gc) if node.gc else None
    return [
        str(node.pid) if node.pid == root else f"└ {node.pid}",
        str(ppid or "–"),
        units.percent(node.cpu_percent),
        units.format_bytes(node.rss),
        str(node.tasks),
        str(node.threads),
        str(sum(loop.ready for loop in node.loops)),
        units.seconds(max(p99) if p99 else None),
        units.seconds(gc),
        " ".join(node.argv),
    ]


def render(fleet: FleetSnapshot, width: int = 132) -> str:
    workers = len(fleet.processes) - 1
    interval = fleet.processes[0].interval if fleet.processes else 0.0
    mode = "totals since attach" if fleet.accumulate else f"per {interval:.2f} s interval"
    lines = [
        f"vmtop — pid {fleet.root} and {workers} subprocess{'es' if workers != 1 else ''} "
        f"with agents  {time.strftime('%H:%M:%S')}",
        "",
    ]
    lines.extend(
        table(
            PROCESS_COLUMNS,
            [
                process_cells(s, fleet.parents.get(s.node.pid, 0), fleet.root)
                for s in fleet.processes
            ],
            width,
        )
    )
    lines.append("")
    lines.append(
        f"{mode}  sorted by {fleet.sort} across processes  {len(fleet.rows)} of "
        f"{fleet.total_rows} rows"
    )
    lines.extend(f"note: {n}" for n in fleet.notes)
    lines.append("")
    cells = [[str(pid), *row_cells(row, fleet.accumulate)] for pid, row in fleet.rows]
    lines.extend(table(ROW_COLUMNS, cells, width))
    if fleet.groups:
        lines += ["", "tasks by coroutine, per process (finished tasks fold into their group)"]
        cells = [[str(pid), *group_cells(g, fleet.accumulate)] for pid, g in fleet.groups]
        lines.extend(table(GROUP_ROW_COLUMNS, cells, width))
    return "\n".join(lines) + "\n"
