"""Cardinality budget: at most K labelled series per family and target, plus one "other".

Coroutine groups: the first K groups seen (the busiest of their first snapshot) keep their
label for the target's life, so a counter never moves between a label and "other"; the rest
add up in "other", from the last totals seen of each (a group the agent stops reporting still
counts there, so "other" never goes down). Mailboxes are gauges: the K longest of this scrape
are labelled and the rest of the scrape's rows summed in "other".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vmtop.records import GroupRow, ProcessRow

GROUPS_K = 20  # labelled coroutine groups per target
MAILBOXES_K = 10  # labelled mailboxes per target
REMEMBERED = 10_000  # groups whose last totals are kept for "other" (one per coroutine function)
OTHER = "other"


@dataclass
class GroupTotals:
    steps: int = 0
    seconds: float = 0.0
    started: int = 0
    finished: int = 0


@dataclass
class GroupBudget:
    """Which groups of one target carry their own label, and the totals behind "other"."""

    k: int = GROUPS_K
    labelled: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (coro, where)
    last: dict[str, GroupTotals] = field(default_factory=dict)

    def update(self, groups: tuple[GroupRow, ...]) -> None:
        for g in sorted(groups, key=lambda g: -(g.reductions_total or 0)):
            if g.key not in self.last and len(self.last) >= REMEMBERED:
                continue
            if g.key not in self.labelled and len(self.labelled) < self.k:
                self.labelled[g.key] = (g.coro, where(g))
            self.last[g.key] = GroupTotals(
                steps=g.reductions_total or 0,
                seconds=g.time_total or 0.0,
                started=g.started_total,
                finished=g.finished_total,
            )

    def has_other(self) -> bool:
        return len(self.last) > len(self.labelled)

    def other(self) -> GroupTotals:
        out = GroupTotals()
        for key, t in self.last.items():
            if key not in self.labelled:
                out.steps += t.steps
                out.seconds += t.seconds
                out.started += t.started
                out.finished += t.finished
        return out


def where(g: GroupRow) -> str:
    return f"{g.file.rsplit('/', 1)[-1]}:{g.line}" if g.file else ""


_AUTO_TASK_NAME = re.compile(r"\bTask-\d+\b")


def mailbox_label(row: ProcessRow) -> str:
    """A row's name, or its coroutine's for a task named by asyncio ("Task-123"): one series
    per handler, not one per task. A shared queue's row names its consumers: asyncio's
    numbered names in it become "Task"."""
    if row.kind == "task" and _AUTO_TASK_NAME.fullmatch(row.name):
        return row.coro or "Task"
    return _AUTO_TASK_NAME.sub("Task", row.name)


def top_mailboxes(rows: tuple[ProcessRow, ...], k: int = MAILBOXES_K) -> dict[tuple[str, str], int]:
    """``(kind, name) -> items`` for the ``k`` longest mailboxes, and ``("", "other")`` for the
    rest of the rows (rows sharing a label are added up)."""
    with_mail = sorted((r for r in rows if r.mailbox), key=lambda r: -(r.mailbox or 0))
    out: dict[tuple[str, str], int] = {}
    for r in with_mail[:k]:
        label = (r.kind, mailbox_label(r))
        out[label] = out.get(label, 0) + (r.mailbox or 0)
    out[("", OTHER)] = sum(r.mailbox or 0 for r in with_mail[k:])
    return out
