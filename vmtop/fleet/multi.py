"""Snapshots of a process and all its descendants that have an agent, in one answer.

:class:`Fleet` keeps one connection per agent (so each keeps its own per-interval deltas),
looks for new descendants at every refresh (those with an agent, in a container too:
:mod:`vmtop.discovery`; each numbered by its pid here, whatever its agent calls itself), asks
all agents at once, and merges their rows:
each agent returns its own top N by the sort key, so the top N of the union is the top N of
the whole tree. A worker that exits, or stops answering, during a refresh becomes a note and
drops out; only the root's loss ends the view.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vmtop.client import AgentClient, ClientError, NoAgent, TargetGone, pid_exists
from vmtop.discovery import discover
from vmtop.fleet.tree import descendants, is_python, parent_pid
from vmtop.records import KINDS, SCHEMA_VERSION, GroupRow, ProcessRow, Snapshot

MAX_PARALLEL = 8


def sort_value(row: ProcessRow | GroupRow, sort: str, accumulate: bool) -> float:
    """The value a row is sorted by (largest first); ``None`` sorts last. Groups have no
    mailbox or memory: sorted by those, they go by time, as the agent sorts them."""
    if isinstance(row, GroupRow) and sort not in ("reductions", "time"):
        sort = "time"
    if sort == "reductions":
        v: float | None = row.reductions_total if accumulate else row.reductions
    elif sort == "time":
        v = row.time_total if accumulate else row.time
    else:
        v = getattr(row, sort, None)
    return float("-inf") if v is None else float(v)


@dataclass(frozen=True)
class FleetSnapshot:
    """One refresh of a process tree: each process's own snapshot, and the rows of all of
    them merged, sorted and cut to the limit, each with its pid."""

    root: int
    processes: tuple[Snapshot, ...]  # root first, then by pid
    parents: dict[int, int]  # pid -> parent pid, for every process in ``processes``
    rows: tuple[tuple[int, ProcessRow], ...]
    groups: tuple[tuple[int, GroupRow], ...]
    sort: str
    accumulate: bool
    total_rows: int
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "root": self.root,
            "sort": self.sort,
            "accumulate": self.accumulate,
            "total_rows": self.total_rows,
            "processes": [
                {**s.to_dict(), "pid": s.node.pid, "ppid": self.parents.get(s.node.pid, 0)}
                for s in self.processes
            ],
            "rows": [{"pid": pid, **row.to_dict()} for pid, row in self.rows],
            "groups": [{"pid": pid, **g.to_dict()} for pid, g in self.groups],
            "notes": list(self.notes),
        }


class Fleet:
    """A root pid and its descendants' agents. Use as a context manager; ``snapshot`` raises
    :class:`ClientError` (:class:`TargetGone`) only for the root."""

    def __init__(self, root: int, timeout: float = 15.0) -> None:
        self.root = root
        self.timeout = timeout
        self.clients: dict[int, AgentClient] = {}
        self.parents: dict[int, int] = {}
        self._no_agent: set[int] = set()
        self._pool = ThreadPoolExecutor(MAX_PARALLEL, thread_name_prefix="vmtop-fleet")

    def connect(self) -> Fleet:
        self.clients[self.root] = AgentClient(self.root, self.timeout).connect()
        self._discover([])
        return self

    def __enter__(self) -> Fleet:
        return self if self.clients else self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self.clients.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def client(self, pid: int) -> AgentClient:
        """The connection to one member (for detail, cancel and profiles)."""
        try:
            return self.clients[pid]
        except KeyError:
            raise ClientError(f"pid {pid} is not one of the processes shown") from None

    def _discover(self, notes: list[str]) -> None:
        found = descendants(self.root)
        self._no_agent &= set(found)  # a pid that comes back is a new process: look again
        new = [pid for pid in found if pid not in self.clients and pid not in self._no_agent]
        agents = discover(new)  # in containers too; no connection to a process without one
        for pid in new:
            if pid not in agents:
                continue  # exited while we looked: nothing to say
            if agents[pid].listening:
                try:
                    self.clients[pid] = AgentClient(pid, self.timeout).connect()
                    continue
                except NoAgent:
                    pass  # it stopped listening meanwhile
                except ClientError:
                    continue  # exited while we looked
            self._no_agent.add(pid)  # said once; a process does not grow an agent later
            if is_python(pid):
                notes.append(f"pid {pid} has no agent (start the program with 'vmtop run')")
        self.parents = {pid: parent_pid(pid) for pid in self.clients}

    def snapshot(
        self,
        sort: str = "reductions",
        limit: int = 50,
        filter: str = "",
        accumulate: bool = False,
        kinds: tuple[str, ...] = KINDS,
        memory: bool = True,
        groups: int = 20,
    ) -> FleetSnapshot:
        notes: list[str] = []
        self._discover(notes)
        kwargs: dict[str, Any] = dict(
            sort=sort,
            limit=limit,
            filter=filter,
            accumulate=accumulate,
            kinds=kinds,
            memory=memory,
            groups=groups,
        )
        pids = sorted(self.clients, key=lambda p: (p != self.root, p))
        futures = {pid: self._pool.submit(self.clients[pid].snapshot, **kwargs) for pid in pids}
        snaps: list[Snapshot] = []
        for pid, future in futures.items():
            try:
                snaps.append(in_our_pids(pid, future.result()))
            except ClientError as exc:
                if pid == self.root:
                    raise
                self._drop(pid)
                if isinstance(exc, TargetGone) or not pid_exists(pid):
                    notes.append(f"pid {pid} exited during the refresh")
                else:
                    notes.append(f"pid {pid} left the view: {exc}")
        return merge(self.root, snaps, self.parents, sort, accumulate, limit, notes)

    def _drop(self, pid: int) -> None:
        client = self.clients.pop(pid, None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def in_our_pids(pid: int, snap: Snapshot) -> Snapshot:
    """``snap`` with its node's pid as we number it: an agent in its own pid namespace (a
    container) reports its pid in there (often 1), which says nothing here and may be
    another member's."""
    if snap.node.pid == pid:
        return snap
    return dataclasses.replace(snap, node=dataclasses.replace(snap.node, pid=pid))


def merge(
    root: int,
    snaps: list[Snapshot],
    parents: dict[int, int],
    sort: str,
    accumulate: bool,
    limit: int,
    notes: list[str],
) -> FleetSnapshot:
    rows = [(s.node.pid, r) for s in snaps for r in s.rows]
    groups = [(s.node.pid, g) for s in snaps for g in s.groups]
    for s in snaps:
        notes.extend(f"pid {s.node.pid}: {n}" for n in s.notes)
    return FleetSnapshot(
        root=root,
        processes=tuple(snaps),
        parents={s.node.pid: parents.get(s.node.pid, 0) for s in snaps},
        rows=tuple(heapq.nlargest(limit, rows, key=lambda pr: sort_value(pr[1], sort, accumulate))),
        groups=tuple(
            heapq.nlargest(limit, groups, key=lambda pg: sort_value(pg[1], sort, accumulate))
        ),
        sort=sort,
        accumulate=accumulate,
        total_rows=sum(s.total_rows for s in snaps),
        notes=tuple(notes),
    )
