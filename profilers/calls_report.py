"""The calls profile (fprof-style): CNT / ACC / OWN per function with callers and callees.

Each function is shown as fprof's analysis shows it: the callers paragraph above it (how often
each caller called it and the time spent in those calls), the function itself, then the callees
paragraph (how often it called each callee and the time those calls took)::

      { caller  (a.py:10)           2     10.000     1.000 }
    fn  (a.py:3)                    3     15.000     2.000 %
      { callee  (a.py:20)           6     13.000    13.000 }

CNT is calls, shown ``total/primitive`` when recursive, the way pstats prints ``ncalls``; ACC is
milliseconds including callees (recursive calls counted once, as cProfile's cumulative time);
OWN is milliseconds excluding callees.
"""

from __future__ import annotations

import marshal
import os
from collections.abc import Iterable
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from profilers.callgraph import (
    CallEdge,
    CallGraph,
    FunctionCalls,
    PstatsDict,
    PstatsKey,
    approximate_stacks,
    frame_of,
)
from profilers.report import Report
from profilers.stacks import Frame, StackModel
from profilers.units import format_seconds, short_location

__all__ = ["CallEdge", "CallsProfile", "CallsView", "FunctionCalls", "PstatsDict", "PstatsKey"]

SORTS = ("own", "acc", "cnt")
DEFAULT_SORT = "own"
DEFAULT_LIMIT = 20
DEFAULT_EDGES = 10


class CallsProfile(Report):
    """What ``vmtop.profile(fn, calls=True)`` returns.

    Shown as :meth:`report` with its defaults (sorted by own time, 20 functions). ``stats`` is the
    pstats dict (``save("x.pstats")`` writes it, ``pstats.Stats("x.pstats")`` reads it back).
    """

    kind = "calls"
    # Set for a profile of a live process (vmtop.jobs_client.calls): which threads cProfile saw.
    scope: str | None = None

    def __init__(
        self,
        stats: PstatsDict,
        duration: float,
        name: str = "profile",
        return_value: Any = None,
    ) -> None:
        self.graph = CallGraph(stats, name)
        self.stats = stats
        self.functions = self.graph.functions
        self.duration = duration
        self.name = name
        self.return_value = return_value
        self._stacks: StackModel | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CallsProfile:
        """Read a pstats file (from ``save``, ``python -m cProfile -o`` or ``dump_stats``)."""
        with open(path, "rb") as f:
            stats = marshal.load(f)
        if not isinstance(stats, dict):
            raise ValueError(f"{os.fspath(path)}: not a pstats file")
        return cls(stats, duration=0.0, name=os.path.basename(os.fspath(path)))

    # -- numbers ---------------------------------------------------------------------------
    @property
    def total_calls(self) -> int:
        return sum(f.calls for f in self.functions.values())

    @property
    def primitive_calls(self) -> int:
        return sum(f.primitive for f in self.functions.values())

    @property
    def total_own(self) -> float:
        return sum(f.own for f in self.functions.values())

    def find(self, name: str) -> list[FunctionCalls]:
        """Functions whose name is ``name`` (or ends with ``.name``), most calls first."""
        found = [
            f
            for f in self.functions.values()
            if f.frame.function == name or f.frame.function.endswith("." + name)
        ]
        return sorted(found, key=lambda f: -f.calls)

    def select(
        self, sort: str = DEFAULT_SORT, limit: int | None = DEFAULT_LIMIT, filter: str | None = None
    ) -> list[FunctionCalls]:
        """Functions matching ``filter`` (name, path or dotted module substring), sorted."""
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be a positive number, not {limit!r}")
        rows: Iterable[FunctionCalls] = self.functions.values()
        if filter:
            rows = [f for f in rows if _matches(f.frame, filter)]
        ranked = sorted(rows, key=_SORT_KEYS[sort])
        return ranked[:limit] if limit is not None else ranked

    # -- views -----------------------------------------------------------------------------
    def report(
        self,
        sort: str = DEFAULT_SORT,
        limit: int | None = DEFAULT_LIMIT,
        filter: str | None = None,
        edges: int | None = DEFAULT_EDGES,
    ) -> CallsView:
        """fprof-style paragraphs: callers, the function (``%``), callees."""
        return CallsView(self, sort, limit, filter, edges=edges, paragraphs=True)

    def table(
        self, sort: str = DEFAULT_SORT, limit: int | None = DEFAULT_LIMIT, filter: str | None = None
    ) -> CallsView:
        """One row a function: CNT, ACC, OWN (like ``pstats.Stats.print_stats``)."""
        return CallsView(self, sort, limit, filter, edges=0, paragraphs=False)

    def __rich__(self) -> RenderableType:
        return self.report().__rich__()

    # -- export ------------------------------------------------------------------------------
    @property
    def stacks(self) -> StackModel:
        """Stacks approximated from the caller/callee graph (see :func:`approximate_stacks`)."""
        if self._stacks is None:
            self._stacks = approximate_stacks(self.functions.values(), name=self.name)
        return self._stacks

    def save(self, path: str | os.PathLike[str], title: str | None = None) -> str:
        """Write ``.pstats`` (pstats/snakeviz), ``.callgrind`` (kcachegrind) or a flamegraph of
        the approximated stacks (.svg .speedscope.json .folded .html). Returns the format."""
        from profilers import writers

        exporter = writers.exporter_for(path)
        model = self.graph if exporter.model is CallGraph else self.stacks
        exporter.save(model, path, title=title or f"vmtop profile --calls: {self.name}")
        return exporter.name

    def to_dict(self) -> dict[str, Any]:
        def edge(key: PstatsKey, e: CallEdge) -> dict[str, Any]:
            frame = frame_of(key)
            return {
                "function": frame.function,
                "file": frame.file,
                "line": frame.line,
                "calls": e.calls,
                "primitive": e.primitive,
                "acc": e.acc,
                "own": e.own,
            }

        return {
            "kind": self.kind,
            "name": self.name,
            "unit": "seconds",
            "duration": self.duration,
            "total_calls": self.total_calls,
            "primitive_calls": self.primitive_calls,
            "functions": [
                {
                    "function": f.frame.function,
                    "file": f.frame.file,
                    "line": f.frame.line,
                    "calls": f.calls,
                    "primitive": f.primitive,
                    "acc": f.acc,
                    "own": f.own,
                    "callers": [edge(k, e) for k, e in _by_acc(f.callers)],
                    "callees": [edge(k, e) for k, e in _by_acc(f.callees)],
                }
                for f in self.select(sort="acc", limit=None)
            ],
        }


class CallsView(Report):
    """A rendering of a :class:`CallsProfile`: sorted, limited, filtered."""

    def __init__(
        self,
        profile: CallsProfile,
        sort: str,
        limit: int | None,
        filter: str | None,
        edges: int | None,
        paragraphs: bool,
    ) -> None:
        self.profile = profile
        self.sort = sort
        self.limit = limit
        self.filter = filter
        self.edges = edges
        self.paragraphs = paragraphs
        self.rows = profile.select(sort, limit, filter)

    def __getattr__(self, name: str) -> Any:
        # save(), stacks, return_value, functions...: those of the whole profile.
        if name.startswith("_") or name == "profile":
            raise AttributeError(name)
        return getattr(self.profile, name)

    def to_dict(self) -> dict[str, Any]:
        whole = self.profile.to_dict()
        keep = {(f.frame.function, f.frame.file, f.frame.line) for f in self.rows}
        whole["functions"] = [
            f for f in whole["functions"] if (f["function"], f["file"], f["line"]) in keep
        ]
        whole.update(sort=self.sort, limit=self.limit, filter=self.filter)
        return whole

    def __rich__(self) -> Group:
        p = self.profile
        matching = len(p.select(self.sort, None, self.filter))
        header = Text.assemble(
            ("vmtop profile", "bold"),
            f" (calls, cProfile): {p.name}  ",
            (f"{p.total_calls:,} calls", "bold"),
            f" ({p.primitive_calls:,} primitive) of {len(p.functions):,} functions",
        )
        if p.duration:
            header.append(f" in {format_seconds(p.duration)}")
        shown = f"sorted by {self.sort}, {len(self.rows)} of {matching:,} functions"
        if self.filter:
            shown += f" matching {self.filter!r}"
        parts: list[RenderableType] = [header, Text(shown, style="dim"), Text("")]
        parts.append(self._paragraphs() if self.paragraphs else self._flat())
        notes = [
            "CNT: calls (total/primitive when recursive); ACC: ms including callees;"
            " OWN: ms excluding callees"
        ]
        if len(self.rows) < matching:
            notes.append(
                f"{matching - len(self.rows):,} more functions not shown (limit {self.limit})"
            )
        parts.append(Text("\n".join(notes), style="dim italic"))
        return Group(*parts)

    def _columns(self, table: Table) -> None:
        table.add_column("function", overflow="fold")
        table.add_column("CNT", justify="right")
        table.add_column("ACC ms", justify="right")
        table.add_column("OWN ms", justify="right", style="cyan")

    def _paragraphs(self) -> Table:
        table = Table(box=None, pad_edge=False, show_edge=False)
        self._columns(table)
        table.add_column("", width=1)
        functions = self.profile.functions
        for n, f in enumerate(self.rows):
            if n:
                table.add_row()
            self._edge_rows(table, f.callers, functions, "caller", "dim")
            table.add_row(
                Text.assemble((f.frame.function, "bold"), ("  " + short_location(f.frame), "dim")),
                _count(f.calls, f.primitive),
                _ms(f.acc),
                Text(_ms(f.own), style="bold cyan"),
                "%",
            )
            self._edge_rows(table, f.callees, functions, "callee", "green")
        return table

    def _edge_rows(
        self,
        table: Table,
        edges: dict[PstatsKey, CallEdge],
        functions: dict[PstatsKey, FunctionCalls],
        what: str,
        style: str,
    ) -> None:
        ranked = _by_acc(edges)
        shown = ranked if self.edges is None else ranked[: self.edges]
        for key, e in shown:
            frame = functions[key].frame if key in functions else frame_of(key)
            label = Text.assemble(("  { ", "dim"), (frame.function, style))
            location = short_location(frame)
            if location:
                label.append("  " + location, style="dim")
            table.add_row(label, _count(e.calls, e.primitive), _ms(e.acc), _ms(e.own), "}")
        if len(shown) < len(ranked):
            more = len(ranked) - len(shown)
            table.add_row(Text(f"  {{ … {more} more {what}s", style="dim"), "", "", "", "}")

    def _flat(self) -> Table:
        table = Table(box=None, pad_edge=False, show_edge=False)
        self._columns(table)
        table.add_column("OWN %", justify="right")
        total = self.profile.total_own
        for f in self.rows:
            table.add_row(
                Text.assemble((f.frame.function, "bold"), ("  " + short_location(f.frame), "dim")),
                _count(f.calls, f.primitive),
                _ms(f.acc),
                _ms(f.own),
                f"{f.own / total:.1%}" if total else "–",
            )
        return table


def _by_acc(edges: dict[PstatsKey, CallEdge]) -> list[tuple[PstatsKey, CallEdge]]:
    return sorted(edges.items(), key=lambda item: (-item[1].acc, -item[1].calls, item[0]))


_SORT_KEYS: dict[str, Any] = {
    "own": lambda f: (-f.own, -f.acc, f.frame.label),
    "acc": lambda f: (-f.acc, -f.own, f.frame.label),
    "cnt": lambda f: (-f.calls, -f.acc, f.frame.label),
}


def _matches(frame: Frame, needle: str) -> bool:
    return (
        needle in frame.function
        or needle in frame.file
        or needle.replace(".", os.sep) in frame.file
    )


def _count(calls: int, primitive: int) -> str:
    return f"{calls}/{primitive}" if calls != primitive else str(calls)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.3f}"
