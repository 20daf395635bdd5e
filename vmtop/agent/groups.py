"""Group rows: the tasks of one coroutine function, live and finished, per interval.

A web service makes one short task per request; a finished task is folded into its group
(the registry keys groups by the coroutine's code object), so the handler that eats the
loop shows as one row with tasks started and finished, steps, time in steps and lifetimes
(creation to completion, from the registry's log-bucket histogram: about 33 % resolution).
Runs on the agent's thread: the groups are few, and reading their counters needs no loop.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Protocol

from vmtop.records import GroupRow

BUCKETS_PER_DECADE = 8  # as in vmtop/agent/registry.py and _registry.h


class Request(Protocol):
    sort: str
    accumulate: bool
    groups: int


@dataclass(frozen=True, slots=True)
class GroupMark:
    """A group's counters at a client's previous snapshot."""

    started: int = 0
    finished: int = 0
    cancelled: int = 0
    failed: int = 0
    steps: int = 0
    secs: float = 0.0
    hist: tuple[int, ...] = ()

    @classmethod
    def of(cls, g: Any) -> GroupMark:
        return cls(
            started=int(g.started),
            finished=int(g.finished),
            cancelled=int(g.cancelled),
            failed=int(g.failed),
            steps=int(g.steps),
            secs=float(g.secs),
            hist=tuple(g.hist),
        )


def bucket_bounds(i: int) -> tuple[float, float]:
    """Seconds covered by histogram bucket ``i``."""
    return (1e-6 * 10 ** (i / BUCKETS_PER_DECADE), 1e-6 * 10 ** ((i + 1) / BUCKETS_PER_DECADE))


def quantile(hist: list[int], q: float) -> float | None:
    """The q-quantile of a lifetime histogram: the geometric middle of its bucket."""
    n = sum(hist)
    if n == 0:
        return None
    rank = q * (n - 1)
    seen = 0
    for i, c in enumerate(hist):
        seen += c
        if seen > rank:
            lo, hi = bucket_bounds(i)
            return float((lo * hi) ** 0.5)
    return None


def highest(hist: list[int]) -> float | None:
    """Upper bound of the highest non-empty bucket (the max, to the bucket's resolution)."""
    for i in range(len(hist) - 1, -1, -1):
        if hist[i]:
            return bucket_bounds(i)[1]
    return None


def describe_code(code: Any) -> tuple[str, str, int]:
    if code is None:
        return "(other coroutines)", "", 0
    if isinstance(code, type):
        return code.__qualname__, "", 0
    name = getattr(code, "co_qualname", None) or getattr(code, "co_name", "?")
    return str(name), str(getattr(code, "co_filename", "")), int(getattr(code, "co_firstlineno", 0))


def group_row(g: Any, prev: GroupMark, accumulate: bool) -> tuple[GroupRow, GroupMark]:
    now = GroupMark.of(g)
    base = prev
    # Lifetimes of the tasks that finished in the interval (since the attach: accumulate).
    then = () if accumulate else prev.hist
    hist = [a - (then[i] if then else 0) for i, a in enumerate(now.hist)]
    name, file, line = describe_code(g.code)
    notes: list[str] = []
    if int(g.adopted):
        notes.append(
            f"{int(g.adopted)} task(s) first seen at a step, not at creation (older than the "
            "attach, or made by asyncio.Task(...) itself): no lifetime, not in STARTED"
        )
    if int(g.abandoned):
        notes.append(f"{int(g.abandoned)} task(s) dropped by the program while pending")
    row = GroupRow(
        key=f"group:{name}@{file}:{line}",
        coro=name,
        file=file,
        line=line,
        live=int(g.live),
        started=now.started - base.started,
        finished=now.finished - base.finished,
        cancelled=now.cancelled - base.cancelled,
        failed=now.failed - base.failed,
        started_total=now.started,
        finished_total=now.finished,
        reductions=now.steps - base.steps,
        reductions_total=now.steps,
        time=now.secs - base.secs,
        time_total=now.secs,
        lifetime_p50=quantile(hist, 0.5),
        lifetime_p99=quantile(hist, 0.99),
        lifetime_max=highest(hist),
        notes=tuple(notes),
    )
    return row, now


def group_rows(groups: list[Any], prev: dict[Any, GroupMark], req: Request) -> list[GroupRow]:
    """The top ``req.groups`` groups by the request's sort (time for mailbox/memory sorts);
    updates ``prev`` (a client's marks) for every group, shown or not."""
    rows: list[GroupRow] = []
    for g in groups:
        row, mark = group_row(g, prev.get(g, GroupMark()), req.accumulate)
        prev[g] = mark
        rows.append(row)
    if req.groups <= 0:
        return []
    if req.sort == "reductions":

        def key(r: GroupRow) -> float:
            return float((r.reductions_total if req.accumulate else r.reductions) or 0)

    else:

        def key(r: GroupRow) -> float:
            return float((r.time_total if req.accumulate else r.time) or 0.0)

    active = [r for r in rows if r.live or r.started or r.finished or r.reductions]
    if req.accumulate:
        active = rows
    return heapq.nlargest(req.groups, active, key=key)
