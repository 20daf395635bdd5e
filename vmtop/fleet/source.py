"""A process tree as one snapshot source, for the TUI (``vmtop attach PID --subprocesses``).

The TUI reads any object with ``snapshot(**kwargs) -> Snapshot``, ``detail(key)``,
``cancel(key)`` and ``close()`` (``vmtop/tui/reader.py``'s ``Source``). :class:`FleetSource`
is one: it merges a :class:`~vmtop.fleet.multi.Fleet` refresh into a single
:class:`~vmtop.records.Snapshot` whose rows carry their pid in the key (``"<pid>/<key>"``,
which routes drill-down and cancel to the right agent) and in the display id
(``"<pid>/<id>"``); loops are named ``"<pid> <loop>"``; the node header adds the processes up.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vmtop.client import ClientError
from vmtop.fleet.multi import Fleet, FleetSnapshot
from vmtop.records import GenGC, NodeInfo, Snapshot


class FleetSource:
    def __init__(self, root: int, timeout: float = 15.0) -> None:
        self.fleet = Fleet(root, timeout)

    def connect(self) -> FleetSource:
        self.fleet.connect()
        return self

    def snapshot(self, **kwargs: Any) -> Snapshot:
        return merged(self.fleet.snapshot(**kwargs))

    def detail(self, key: str) -> dict[str, Any]:
        pid, inner = split_key(key)
        return self.fleet.client(pid).detail(inner)

    def cancel(self, key: str) -> dict[str, Any]:
        pid, inner = split_key(key)
        return self.fleet.client(pid).cancel(inner)

    def close(self) -> None:
        self.fleet.close()


def split_key(key: str) -> tuple[int, str]:
    pid, sep, inner = key.partition("/")
    if not sep or not pid.isdigit():
        raise ClientError(f"not a row of this view: {key!r}")
    return int(pid), inner


def merged(fleet: FleetSnapshot) -> Snapshot:
    """One snapshot of the whole tree: the rows as sorted across processes, each tagged."""
    if not fleet.processes:
        raise ClientError(f"no process of pid {fleet.root}'s tree answered")
    root = fleet.processes[0]
    rows = tuple(
        dataclasses.replace(
            row,
            key=f"{pid}/{row.key}",
            id=f"{pid}/{row.id}",
            loop=f"{pid} {row.loop}" if row.loop else "",
        )
        for pid, row in fleet.rows
    )
    groups = tuple(
        dataclasses.replace(
            g, key=f"{pid}/{g.key}", coro=f"{g.coro} [{pid}]", loop=f"{pid} {g.loop}"
        )
        for pid, g in fleet.groups
    )
    return Snapshot(
        node=merged_node(fleet),
        rows=rows,
        sort=fleet.sort,
        accumulate=fleet.accumulate,
        interval=root.interval,
        total_rows=fleet.total_rows,
        taken_at=root.taken_at,
        cost=max(s.cost for s in fleet.processes),
        loop_time=max(s.loop_time for s in fleet.processes),
        notes=fleet.notes,
        groups=groups,
    )


def merged_node(fleet: FleetSnapshot) -> NodeInfo:
    """The root's node, with the figures of every process of the tree added up."""
    nodes = [s.node for s in fleet.processes]
    root = nodes[0]
    loops = tuple(
        dataclasses.replace(loop, name=f"{n.pid} {loop.name}") for n in nodes for loop in n.loops
    )
    workers = len(nodes) - 1
    return dataclasses.replace(
        root,
        argv=(*root.argv, f"(+{workers} subprocess{'es' if workers != 1 else ''})"),
        cpu_percent=_sum(n.cpu_percent for n in nodes),
        rss=_sum(n.rss for n in nodes),
        threads=sum(n.threads for n in nodes),
        tasks=sum(n.tasks for n in nodes),
        loops=loops,
        gc=_gc_sum([n.gc for n in nodes]),
        gc_share=None,  # a share of whose wall time? each process's is in its own header
        tasks_created=_sum(n.tasks_created for n in nodes),
        tasks_finished=_sum(n.tasks_finished for n in nodes),
        tasks_created_total=_sum(n.tasks_created_total for n in nodes),
        tasks_finished_total=_sum(n.tasks_finished_total for n in nodes),
    )


def _sum(values: Any) -> Any:
    """The sum, or None when any process could not measure it."""
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def _gc_sum(per_process: list[tuple[GenGC, ...]]) -> tuple[GenGC, ...]:
    if not per_process or any(len(g) != len(per_process[0]) for g in per_process):
        return ()
    return tuple(
        GenGC(
            collections=sum(g.collections for g in gens),
            collected=sum(g.collected for g in gens),
            uncollectable=sum(g.uncollectable for g in gens),
            pause_total=sum(g.pause_total for g in gens),
            pause_max=max((g.pause_max for g in gens if g.pause_max is not None), default=None),  # type: ignore[arg-type]
        )
        for gens in zip(*per_process, strict=True)
    )
