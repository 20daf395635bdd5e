"""The allocation report: what ``vmtop.allocations`` returns and ``vmtop allocations`` prints.

An :class:`AllocationReport` is built from two ``tracemalloc`` snapshots (taken before and after
the measured code) plus the traced-memory counters read around it. Snapshots pickle, so a
report can be built in another process than the one measured; the analysis
(:mod:`profilers.alloc_analysis`) runs lazily, on first use.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterable
from typing import Any

from profilers.alloc_analysis import (
    OWN_FILES,
    Aggregate,
    By,
    Group,
    Site,
    SiteDiff,
    aggregate,
    growth,
)
from profilers.report import Report
from profilers.stacks import StackModel
from profilers.units import format_bytes, short_path

__all__ = ["AllocationReport", "AllocationView"]


class AllocationReport(Report):
    """Memory traced by ``tracemalloc`` around a piece of code.

    - ``peak``: highest traced memory while the code ran (``None``: not measured);
      ``peak_above_start`` the same above the traced memory at the start.
    - ``net``: traced memory at the end minus at the start (what the code kept).
    - ``traced``: traced memory at the end; ``blocks``: live memory blocks at the end.
    - ``top(by, group, limit)``: sites holding the most memory at the end (by bytes or by
      blocks; per line, function or file). Memory freed before the end is not in it: ``peak``
      is where it shows.
    - ``growth(group)``: sites that grew between the two snapshots (leak hunting).
    - ``stacks``: allocation stack model (unit bytes) for ``save("alloc.svg")`` and friends.
    """

    # Set for a report of a live process (vmtop.jobs_client.allocations): the seconds the
    # target paused to take its tracemalloc snapshot(s).
    snapshot_pause: float | None = None

    def __init__(
        self,
        after: tracemalloc.Snapshot,
        before: tracemalloc.Snapshot | None = None,
        *,
        name: str = "allocations",
        duration: float | None = None,
        start_traced: int | None = None,
        end_traced: int | None = None,
        peak: int | None = None,
        was_tracing: bool = False,
        requested_nframe: int | None = None,
        return_value: Any = None,
        exclude: Iterable[str] = OWN_FILES,
        outer: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.snapshot = after
        self.snapshot_before = before
        self.name = name
        self.duration = duration
        self.start_traced = start_traced
        self.end_traced = end_traced
        self.peak = peak
        self.was_tracing = was_tracing
        self.nframe = after.traceback_limit
        self.requested_nframe = requested_nframe
        self.return_value = return_value
        self.exclude = tuple(exclude)
        #: Frames that called the measured code (most recent first): cut from the stacks.
        self.outer = outer
        self._after: Aggregate | None = None
        self._before: Aggregate | None = None
        self._growth: dict[str, list[SiteDiff]] = {}
        self._models: dict[str, StackModel] = {}

    # -- analysis (lazy) ---------------------------------------------------------------------
    @property
    def aggregate(self) -> Aggregate:
        """The end snapshot summed per traceback (computed once)."""
        if self._after is None:
            self._after = aggregate(self.snapshot, self.exclude)
        return self._after

    @property
    def peak_above_start(self) -> int | None:
        if self.peak is None or self.start_traced is None:
            return None
        return self.peak - self.start_traced

    @property
    def net(self) -> int | None:
        """Traced bytes at the end minus at the start (``None`` without the counters)."""
        if self.start_traced is None or self.end_traced is None:
            if self.snapshot_before is None:
                return None
            return self.aggregate.size - self._before_aggregate().size
        return self.end_traced - self.start_traced

    @property
    def traced(self) -> int:
        """Traced bytes at the end, the report's own frames excluded."""
        return self.aggregate.size

    @property
    def blocks(self) -> int:
        """Live memory blocks at the end, the report's own frames excluded."""
        return self.aggregate.count

    def top(self, by: By = "bytes", group: Group = "line", limit: int | None = 10) -> list[Site]:
        """Sites holding the most memory at the end: ``by`` bytes or count, per ``group``."""
        return self.aggregate.top(by=by, group=group, limit=limit)

    def growth(self, group: Group = "line", limit: int | None = None) -> list[SiteDiff]:
        """Sites whose memory changed between the start and the end, most grown first."""
        if self.snapshot_before is None:
            raise ValueError("growth needs the snapshot taken before the code ran")
        diffs = self._growth.get(group)
        if diffs is None:
            diffs = self._growth[group] = growth(
                self._before_aggregate(), self.aggregate, group=group
            )
        return diffs if limit is None else diffs[:limit]

    def _before_aggregate(self) -> Aggregate:
        assert self.snapshot_before is not None
        if self._before is None:
            self._before = aggregate(self.snapshot_before, self.exclude)
        return self._before

    def stack_model(self, by: By = "bytes") -> StackModel:
        """Allocation stacks, root first, weighted by bytes (or by blocks with ``by="count"``)."""
        model = self._models.get(by)
        if model is None:
            model = self._models[by] = self.aggregate.stack_model(
                by=by, name=self.name, outer=self.outer
            )
        return model

    @property
    def stacks(self) -> StackModel:
        """The allocation flamegraph's stacks (bytes still allocated at the end)."""
        return self.stack_model("bytes")

    def save(self, path: str | os.PathLike[str], title: str | None = None, by: By = "bytes") -> str:
        """Write the allocation flamegraph; the format comes from the suffix (.svg, ...)."""
        from profilers.writers import save

        return save(self.stack_model(by), path, title=title or f"allocations: {self.name}")

    def view(self, by: By = "bytes", group: Group = "line", limit: int = 10) -> AllocationView:
        """The report shown with other table options (the REPL prints it)."""
        if by not in ("bytes", "count"):
            raise ValueError(f"by must be 'bytes' or 'count', not {by!r}")
        if group not in ("line", "function", "file"):
            raise ValueError(f"group must be 'line', 'function' or 'file', not {group!r}")
        return AllocationView(self, by, group, limit)

    # -- output ------------------------------------------------------------------------------
    def notes(self) -> list[str]:
        out = []
        if self.was_tracing:
            wanted = self.requested_nframe
            frames = f"{self.nframe} frames" + (
                f", not the {wanted} asked for" if wanted and wanted != self.nframe else ""
            )
            out.append(
                f"tracemalloc was already tracing ({frames}): left on; its peak was reset at the "
                "start; the tables include memory traced before the start (see growth)"
            )
        return out

    def to_dict(self, limit: int = 20) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "duration_s": self.duration,
            "nframe": self.nframe,
            "was_tracing": self.was_tracing,
            "peak_bytes": self.peak,
            "peak_above_start_bytes": self.peak_above_start,
            "net_bytes": self.net,
            "traced_bytes": self.traced,
            "blocks": self.blocks,
            "top_by_bytes": [_site_dict(s) for s in self.top("bytes", "line", limit)],
            "top_by_count": [_site_dict(s) for s in self.top("count", "line", limit)],
            "top_functions": [_site_dict(s) for s in self.top("bytes", "function", limit)],
            "notes": self.notes(),
        }
        if self.snapshot_before is not None:
            out["growth"] = [_diff_dict(d) for d in self.growth("line", limit) if d.size_diff > 0]
        return out

    def __rich__(self) -> Any:
        return self.view().__rich__()


class AllocationView(Report):
    """An :class:`AllocationReport` rendered with chosen ``by`` / ``group`` / ``limit``."""

    def __init__(self, report: AllocationReport, by: By, group: Group, limit: int) -> None:
        self.report = report
        self.by = by
        self.group = group
        self.limit = limit

    def to_dict(self) -> dict[str, Any]:
        out = self.report.to_dict(self.limit)
        out["top"] = [_site_dict(s) for s in self.report.top(self.by, self.group, self.limit)]
        return out

    def __rich__(self) -> Any:
        from rich.console import Group as RichGroup
        from rich.text import Text

        r = self.report
        parts: list[Any] = [self._title(), self._summary(), Text(""), self._top_sites()]
        if r.was_tracing and r.snapshot_before is not None:
            parts += [Text(""), self._growth()]
        parts += [Text(f"note: {note}", style="dim") for note in r.notes()]
        return RichGroup(*parts)

    def _title(self) -> Any:
        from rich.text import Text

        r = self.report
        title = Text.assemble(("Allocations: ", "bold"), (r.name, "bold cyan"))
        detail = [f"tracemalloc, {r.nframe} frame{'s' if r.nframe != 1 else ''}"]
        if r.duration is not None:
            detail.append(f"{r.duration:.3f} s")
        title.append(f"  ({', '.join(detail)})", style="dim")
        return title

    def _summary(self) -> Any:
        """One line: peak, net retained, traced at the end, live blocks."""
        from rich.table import Table
        from rich.text import Text

        r = self.report
        cells = []
        if r.peak is not None:
            peak = format_bytes(r.peak)
            above = r.peak_above_start
            if r.was_tracing and above is not None:
                peak += f" ({format_bytes(above)} above start)"
            cells.append(Text.assemble(("peak ", "dim"), (peak, "bold")))
        net = r.net
        if net is not None:
            cells.append(
                Text.assemble(("net retained ", "dim"), (format_bytes(net, sign=True), "bold"))
            )
        cells.append(Text.assemble(("traced at end ", "dim"), (format_bytes(r.traced), "bold")))
        cells.append(Text.assemble(("live blocks ", "dim"), (f"{r.blocks:,}", "bold")))
        summary = Table.grid(padding=(0, 3))
        for _ in cells:
            summary.add_column()
        summary.add_row(*cells)
        return summary

    def _top_sites(self) -> Any:
        """The sites holding the most memory at the end."""
        from rich.text import Text

        r = self.report
        sites = r.top(self.by, self.group, self.limit)
        order = "bytes" if self.by == "bytes" else "live blocks"
        table = self._table(
            f"Top {len(sites)} {self._what()} by {order} still allocated at the end",
            ("bytes", "%", "blocks", "avg"),
            "file" if self.group != "line" else "where",
        )
        total = r.traced or 1
        for site in sites:
            row = [
                format_bytes(site.size),
                f"{100 * site.size / total:.1f}",
                f"{site.count:,}",
                format_bytes(round(site.average)),
            ]
            table.add_row(*self._place(row, site.function, site.file, site.line))
        return table if sites else Text("no traced memory left at the end", style="dim")

    def _growth(self) -> Any:
        """The sites that grew between the two snapshots."""
        from rich.text import Text

        grown = [d for d in self.report.growth(self.group) if d.size_diff > 0][: self.limit]
        table = self._table(
            f"Growth since the start: top {len(grown)} {self._what()}",
            ("+bytes", "+blocks", "now"),
            "where",
        )
        for d in grown:
            row = [format_bytes(d.size_diff, sign=True), f"{d.count_diff:+,}", format_bytes(d.size)]
            table.add_row(*self._place(row, d.function, d.file, d.line))
        return table if grown else Text("no site grew", style="dim")

    def _what(self) -> str:
        return {"line": "lines", "function": "functions", "file": "files"}[self.group]

    def _table(self, title: str, numbers: tuple[str, ...], place: str) -> Any:
        """A titled table: right-aligned number columns, then function (unless grouped by
        file) and the place."""
        from rich.table import Table

        table = Table(
            title=title,
            title_justify="left",
            title_style="bold",
            box=None,
            header_style="bold dim",
            pad_edge=False,
        )
        for name in numbers:
            table.add_column(name, justify="right")
        if self.group != "file":
            table.add_column("function", overflow="fold")
        table.add_column(place, overflow="fold")
        return table

    def _place(self, row: list[str], function: str, file: str, line: int) -> list[str]:
        if self.group != "file":
            row.append(function)
        row.append(_where(file, line))
        return row


def _where(file: str, line: int) -> str:
    path = short_path(file)
    return f"{path}:{line}" if line else path


def _site_dict(site: Site) -> dict[str, Any]:
    return {
        "file": site.file,
        "line": site.line,
        "function": site.function,
        "bytes": site.size,
        "count": site.count,
    }


def _diff_dict(diff: SiteDiff) -> dict[str, Any]:
    return {
        "file": diff.file,
        "line": diff.line,
        "function": diff.function,
        "bytes": diff.size,
        "count": diff.count,
        "bytes_diff": diff.size_diff,
        "count_diff": diff.count_diff,
    }
