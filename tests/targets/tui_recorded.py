"""Recorded demo snapshots as a TUI *source*: fixed input data for deterministic screenshots.

This is a fixture of input data, not a mock of the thing under test: the TUI (view model,
widgets, screens) runs for real; only the target's answers come from a recording of the
demo made by ``python scripts/screenshots.py --record tests/data/tui_snapshots.json``.
Each ``snapshot()`` call returns the next recorded snapshot (then the last one again, with
the same ``taken_at``, so the history stops growing) with the request applied the way the
agent applies it: kinds, a name/coroutine filter, the top ``limit`` rows by the sort key.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from vmtop.client import ClientError, TargetGone
from vmtop.records import KINDS, ProcessRow, Snapshot

DATA = Path(__file__).resolve().parent.parent / "data" / "tui_snapshots.json"


def load(path: Path = DATA) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _value(row: ProcessRow, sort: str, accumulate: bool) -> float:
    if sort == "reductions":
        v: float | None = row.reductions_total if accumulate else row.reductions
    elif sort == "time":
        v = row.time_total if accumulate else row.time
    elif sort == "mailbox":
        v = row.mailbox
    else:
        v = row.memory
    return -1.0 if v is None else float(v)


class RecordedSource:
    """Answers like an agent, from a recording. ``die()`` makes the next call fail as a
    target that exited does."""

    def __init__(self, data: dict[str, Any] | None = None, repeat_last: bool = True) -> None:
        data = data if data is not None else load()
        self.snapshots = [Snapshot.from_dict(s) for s in data["snapshots"]]
        self.details: dict[str, dict[str, Any]] = dict(data.get("details") or {})
        self.calls: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        self.closed = False
        self.dead = False
        self.repeat_last = repeat_last

    @property
    def pid(self) -> int:
        return self.snapshots[0].node.pid

    def die(self) -> None:
        self.dead = True

    def _alive(self) -> None:
        if self.dead:
            raise TargetGone(f"target pid {self.pid} exited")

    def snapshot(
        self,
        sort: str = "reductions",
        limit: int = 50,
        filter: str = "",
        accumulate: bool = False,
        kinds: tuple[str, ...] = KINDS,
        memory: bool = True,
        groups: int = 20,
    ) -> Snapshot:
        self._alive()
        index = min(len(self.calls), len(self.snapshots) - 1)
        self.calls.append(
            dict(sort=sort, limit=limit, filter=filter, accumulate=accumulate, kinds=kinds)
        )
        base = self.snapshots[index]
        text = filter.lower()
        rows = [
            r
            for r in base.rows
            if r.kind in kinds and (text in r.name.lower() or text in r.coro.lower())
        ]
        chosen = sorted(rows, key=lambda r: -_value(r, sort, accumulate))[:limit]
        return dataclasses.replace(
            base, rows=tuple(chosen), sort=sort, accumulate=accumulate, total_rows=len(rows)
        )

    def detail(self, key: str) -> dict[str, Any]:
        self._alive()
        if key not in self.details:
            raise ClientError(f"agent: no detail recorded for {key} (not_found)")
        return dict(self.details[key])

    def cancel(self, key: str) -> dict[str, Any]:
        self._alive()
        self.cancelled.append(key)
        name = next((r.name for r in self.snapshots[-1].rows if r.key == key), key)
        return {"key": key, "name": name, "cancel_requested": True}

    def close(self) -> None:
        self.closed = True
