"""GC statistics: what a :class:`~profilers.gcwatch.GCWatcher` saw, as plain frozen data.

A leaf module: the watcher (the recorder) builds these, the report (:mod:`profilers.gc_report`)
and the live job's client read them, and neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

GENERATIONS = 3


@dataclass(frozen=True, slots=True)
class GenStats:
    """One generation. Pause statistics are ``None`` when there was no pause to measure.

    ``collections`` counts collections *of* this generation (a gen-2 collection also collects
    0 and 1 but counts here only under 2, as ``gc.get_stats()`` does).
    """

    collections: int
    collected: int
    uncollectable: int
    pause_total_s: float
    pause_max_s: float | None
    pause_p50_s: float | None
    pause_p99_s: float | None


@dataclass(frozen=True, slots=True)
class GCStats:
    """What a :class:`GCWatcher` saw since ``start()``; ``generations`` is indexed 0, 1, 2."""

    generations: tuple[GenStats, ...]
    thresholds: tuple[int, ...]
    counts: tuple[int, ...]
    gc_enabled: bool
    wall_s: float
    gc_share: float
    pauses_kept: int = 0

    @property
    def collections(self) -> int:
        return sum(g.collections for g in self.generations)

    @property
    def collected(self) -> int:
        return sum(g.collected for g in self.generations)

    @property
    def uncollectable(self) -> int:
        return sum(g.uncollectable for g in self.generations)

    @property
    def pause_total_s(self) -> float:
        return sum(g.pause_total_s for g in self.generations)

    @property
    def pause_max_s(self) -> float | None:
        known = [g.pause_max_s for g in self.generations if g.pause_max_s is not None]
        return max(known) if known else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["generations"] = [asdict(g) for g in self.generations]
        out["thresholds"] = list(self.thresholds)
        out["counts"] = list(self.counts)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GCStats:
        """The inverse of :meth:`to_dict`; ``ValueError`` on anything else."""
        try:
            return cls(
                generations=tuple(GenStats(**g) for g in data["generations"]),
                thresholds=tuple(int(t) for t in data["thresholds"]),
                counts=tuple(int(c) for c in data["counts"]),
                gc_enabled=bool(data["gc_enabled"]),
                wall_s=float(data["wall_s"]),
                gc_share=float(data["gc_share"]),
                pauses_kept=int(data.get("pauses_kept", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not GC statistics: {exc}") from None

    def delta(self, older: GCStats) -> GCStats:
        """What happened between ``older`` and this snapshot (same watcher run).

        Counts and pause totals are differences; the pause maximum and percentiles of an
        interval cannot be derived from two snapshots, so they are ``None`` unless no
        collection happened in between. ``thresholds``, ``counts``, ``gc_enabled`` are now.
        """
        gens = []
        for new, old in zip(self.generations, older.generations, strict=True):
            n = new.collections - old.collections
            gens.append(
                GenStats(
                    collections=n,
                    collected=new.collected - old.collected,
                    uncollectable=new.uncollectable - old.uncollectable,
                    pause_total_s=max(0.0, new.pause_total_s - old.pause_total_s),
                    pause_max_s=None,
                    pause_p50_s=None,
                    pause_p99_s=None,
                )
            )
        wall = max(0.0, self.wall_s - older.wall_s)
        total = sum(g.pause_total_s for g in gens)
        return GCStats(
            generations=tuple(gens),
            thresholds=self.thresholds,
            counts=self.counts,
            gc_enabled=self.gc_enabled,
            wall_s=wall,
            gc_share=total / wall if wall > 0 else 0.0,
            pauses_kept=0,
        )
