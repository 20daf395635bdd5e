"""The GC-pressure report: what ``vmtop.gc_pressure`` returns and ``vmtop gc`` prints.

Built from one :class:`~profilers.gc_stats.GCStats`. Findings are short and appear only when
the numbers support them: a high share of wall time in collections (with the generation that
dominates), uncollectable objects, many objects freed only by the cycle collector, or the
collector being disabled.
"""

from __future__ import annotations

from typing import Any

from profilers.gc_stats import GCStats
from profilers.report import Report
from profilers.units import format_seconds

__all__ = ["GCReport", "findings"]

#: Share of wall time in collections from which GC is called a cost worth acting on.
HIGH_SHARE = 0.10
#: ... provided the pauses add up to at least this much (a 2 ms run says nothing).
MIN_PAUSE_TOTAL_S = 0.010
#: Objects freed by the cycle collector from which reference cycles are worth a mention.
MANY_COLLECTED = 10_000


class GCReport(Report):
    """Collections, collected objects and pauses per generation while some code ran.

    ``stats`` is the :class:`GCStats` (``stats.generations[g].collections``, ...),
    ``wall_s`` the run's wall time, ``gc_share`` the share of it spent in collections,
    ``findings`` the plain-language conclusions (empty when there is nothing to say).
    """

    def __init__(
        self,
        stats: GCStats,
        *,
        name: str = "gc",
        enabled_at_start: bool = True,
        return_value: Any = None,
    ) -> None:
        self.stats = stats
        self.name = name
        self.enabled_at_start = enabled_at_start
        self.return_value = return_value
        self.findings = findings(stats, enabled_at_start)

    @property
    def wall_s(self) -> float:
        return self.stats.wall_s

    @property
    def gc_share(self) -> float:
        return self.stats.gc_share

    @property
    def collections(self) -> tuple[int, ...]:
        """Collections per generation (0, 1, 2)."""
        return tuple(g.collections for g in self.stats.generations)

    @property
    def pause_total_s(self) -> float:
        return self.stats.pause_total_s

    def to_dict(self) -> dict[str, Any]:
        out = self.stats.to_dict()
        out["name"] = self.name
        out["enabled_at_start"] = self.enabled_at_start
        out["pause_total_s"] = self.stats.pause_total_s
        out["findings"] = list(self.findings)
        return out

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        s = self.stats
        title = Text.assemble(("GC pressure: ", "bold"), (self.name, "bold cyan"))
        enabled = "enabled" if s.gc_enabled and self.enabled_at_start else "DISABLED"
        thresholds = "/".join(str(t) for t in s.thresholds)
        title.append(
            f"  ({s.wall_s:.3f} s wall, gc {enabled}, thresholds {thresholds})", style="dim"
        )
        table = Table(box=None, header_style="bold dim", pad_edge=False)
        for column in ("gen", "collections", "collected", "uncollectable", "pause total"):
            table.add_column(column, justify="right")
        for column in ("p50", "p99", "max", "% of wall"):
            table.add_column(column, justify="right")
        wall = s.wall_s
        for g, gen in enumerate(s.generations):
            table.add_row(
                str(g),
                f"{gen.collections:,}",
                f"{gen.collected:,}",
                f"{gen.uncollectable:,}",
                format_seconds(gen.pause_total_s) if gen.collections else "–",
                format_seconds(gen.pause_p50_s),
                format_seconds(gen.pause_p99_s),
                format_seconds(gen.pause_max_s),
                _percent(gen.pause_total_s, wall) if gen.collections else "–",
            )
        table.add_row(
            Text("all", style="bold"),
            f"{s.collections:,}",
            f"{s.collected:,}",
            f"{s.uncollectable:,}",
            format_seconds(s.pause_total_s) if s.collections else "–",
            "",
            "",
            format_seconds(s.pause_max_s),
            _percent(s.pause_total_s, wall) if s.collections else "–",
            style="bold",
        )
        parts: list[Any] = [title, table]
        if self.findings:
            parts.append(Text(""))
            parts.extend(Text(f"- {f}") for f in self.findings)
        if s.pauses_kept < s.collections:
            parts.append(
                Text(
                    f"note: p50/p99 over the last {s.pauses_kept:,} pauses; totals and max over all",
                    style="dim",
                )
            )
        return Group(*parts)


def findings(stats: GCStats, enabled_at_start: bool = True) -> list[str]:
    """Plain-language conclusions the numbers support (none when nothing stands out)."""
    out: list[str] = []
    total = stats.pause_total_s
    if stats.wall_s > 0 and total >= MIN_PAUSE_TOTAL_S and stats.gc_share >= HIGH_SHARE:
        gens = stats.generations
        g = max(range(len(gens)), key=lambda i: gens[i].pause_total_s)
        gen = gens[g]
        share = gen.pause_total_s / stats.wall_s
        n = gen.collections
        if g == len(gens) - 1:
            out.append(
                f"gen-{g} collections took {share:.0%} of wall time ({n:,} full collection"
                f"{'s' if n != 1 else ''}, {format_seconds(gen.pause_total_s)}): each walks "
                "every tracked container object in the process, so the cost grows with the "
                "objects kept alive; consider gc.freeze() after start-up or raising the "
                "thresholds (gc.set_threshold); explicit gc.collect() calls count here too"
            )
        else:
            threshold = stats.thresholds[0] if stats.thresholds else "?"
            out.append(
                f"gen-{g} collections took {share:.0%} of wall time ({n:,} collection"
                f"{'s' if n != 1 else ''}, {format_seconds(gen.pause_total_s)}): this code "
                "creates container objects (lists, dicts, instances) fast enough to trigger "
                f"young collections constantly; consider raising threshold 0 (now {threshold}) "
                "with gc.set_threshold, or creating fewer temporary containers"
            )
    if stats.uncollectable:
        out.append(
            f"{stats.uncollectable:,} uncollectable object{'s' if stats.uncollectable != 1 else ''}"
            ": the collector found them unreachable but could not free them; they are in "
            "gc.garbage"
        )
    if stats.collected >= MANY_COLLECTED:
        out.append(
            f"{stats.collected:,} objects were freed by the cycle collector, not by reference "
            "counting: they were in reference cycles; breaking the cycles (weakref, clearing "
            "back-references) frees them as soon as they are dropped"
        )
    if not enabled_at_start or not stats.gc_enabled:
        when = "at the start" if not enabled_at_start else "at the end"
        if not enabled_at_start and not stats.gc_enabled:
            when = "throughout"
        out.append(
            f"automatic collection was disabled {when} (gc.disable()): reference cycles "
            "created meanwhile stay in memory until a collection runs"
        )
    return out


def _percent(part: float, whole: float) -> str:
    if whole <= 0:
        return "–"
    return f"{100 * part / whole:.1f}"
