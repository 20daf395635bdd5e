"""GCWatcher and ``vmtop.gc_pressure`` against the interpreter's own ``gc.get_stats()``.

Exact comparisons need no collection between the two reads of ``gc.get_stats()`` other than
the measured ones: each test starts with ``gc.collect()`` (young count back to 0) and does
few container allocations outside the measured window.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from collections.abc import Iterator

import pytest

import vmtop
from profilers.gc_report import GCReport, findings
from profilers.gcwatch import GCPressure, GCStats, GCWatcher, GenStats, _percentile
from profilers.units import format_seconds

pytestmark = pytest.mark.internals  # runs under every supported Python in CI


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def make_cycles(n: int) -> None:
    for _ in range(n):
        a, b = Node(), Node()
        a.other, b.other = b, a


def collections_now() -> list[int]:
    return [g["collections"] for g in gc.get_stats()]


def collected_now() -> list[int]:
    return [g["collected"] for g in gc.get_stats()]


@pytest.fixture(autouse=True)
def _callbacks_untouched() -> Iterator[None]:
    before = list(gc.callbacks)
    yield
    assert gc.callbacks == before


def test_watcher_counts_equal_gc_get_stats() -> None:
    w = GCWatcher()
    gc.collect()
    stats0, freed0 = collections_now(), collected_now()
    w.start()
    make_cycles(30_000)
    w.stop()
    stats1, freed1 = collections_now(), collected_now()
    s = w.snapshot()
    assert [g.collections for g in s.generations] == [
        b - a for a, b in zip(stats0, stats1, strict=True)
    ]
    assert [g.collected for g in s.generations] == [
        b - a for a, b in zip(freed0, freed1, strict=True)
    ]
    assert s.generations[0].collections > 10  # 60k tracked objects at threshold 700
    assert s.collected >= 50_000  # the cycles, freed by the collector
    assert 0 < s.pause_total_s < s.wall_s
    gen0 = s.generations[0]
    assert gen0.pause_p50_s is not None and gen0.pause_p99_s is not None
    assert gen0.pause_max_s is not None
    assert 0 < gen0.pause_p50_s <= gen0.pause_p99_s <= gen0.pause_max_s <= gen0.pause_total_s
    assert s.thresholds == gc.get_threshold() and s.gc_enabled
    assert s.pauses_kept == s.collections
    assert w.snapshot().wall_s == s.wall_s  # frozen once stopped


def test_gc_pressure_reports_the_collections_of_the_call() -> None:
    def work() -> str:
        make_cycles(20_000)
        gc.collect()  # also ends with a young count of 0: no collection while reporting
        return "done"

    gc.collect()
    before = collections_now()
    g = vmtop.gc_pressure(work)
    after = collections_now()
    assert isinstance(g, GCReport) and g.return_value == "done" and g.name.endswith("work")
    assert list(g.collections) == [b - a for a, b in zip(before, after, strict=True)]
    assert g.collections[2] >= 1  # the explicit gc.collect()
    assert 0 < g.pause_total_s < g.wall_s
    assert 0 < g.gc_share < 1
    assert any("freed by the cycle collector" in f for f in g.findings)


def test_with_block_async_and_threads() -> None:
    gc.collect()
    before = collections_now()
    with vmtop.gc_pressure() as g:
        worker = threading.Thread(target=make_cycles, args=(10_000,))
        worker.start()
        worker.join()
        gc.collect()
    after = collections_now()
    assert isinstance(g, GCPressure) and "with block at" in g.name
    assert list(g.collections) == [b - a for a, b in zip(before, after, strict=True)]
    assert g.stats.collected >= 20_000  # collections triggered on the other thread count too

    async def co() -> int:
        await asyncio.sleep(0)
        make_cycles(5_000)
        gc.collect()
        return 7

    a = vmtop.gc_pressure(co)
    assert a.return_value == 7 and a.stats.collected >= 10_000


def test_stop_restores_callbacks_exactly_and_start_is_idempotent() -> None:
    def mine(phase: str, info: dict[str, int]) -> None:
        pass

    def theirs(phase: str, info: dict[str, int]) -> None:
        pass

    original = gc.callbacks
    gc.callbacks.append(mine)
    try:
        w = GCWatcher()
        w.start()
        w.start()
        assert w.running and len(gc.callbacks) == len(original) and gc.callbacks[-1] != mine
        gc.callbacks.append(theirs)  # someone else's, added while we watch
        w.stop()
        w.stop()
        assert not w.running
        assert gc.callbacks is original and gc.callbacks[-2:] == [mine, theirs]
        gc.callbacks.remove(theirs)
    finally:
        gc.callbacks.remove(mine)


def test_callback_never_raises() -> None:
    w = GCWatcher()
    w._callback("stop", {})  # no generation: counted as an error, not raised
    w._callback("stop", {"generation": 7, "collected": 0, "uncollectable": 0})
    assert w.errors == 2
    w._callback("stop", {"generation": 1, "collected": 3, "uncollectable": 0})  # no start seen
    s = w.snapshot()
    assert s.generations[1].collections == 1 and s.generations[1].collected == 3
    assert s.generations[1].pause_max_s is None  # no pause measured: none shown


def test_pause_window_is_bounded_and_delta_subtracts() -> None:
    w = GCWatcher(max_pauses=5)
    gc.collect()
    w.start()
    first = w.snapshot()
    for _ in range(12):
        gc.collect(0)
    second = w.snapshot()
    w.stop()
    gen0 = second.generations[0]
    assert gen0.collections == 12 and second.pauses_kept == 5
    d = second.delta(first)
    assert d.generations[0].collections == 12 - first.generations[0].collections
    assert d.generations[0].pause_max_s is None  # an interval's max is not knowable
    assert d.wall_s <= second.wall_s
    data = json.loads(json.dumps(second.to_dict()))
    assert data["generations"][0]["collections"] == 12 and len(data["thresholds"]) == 3
    assert GCStats.from_dict(data) == second  # what a live GC job ships comes back equal
    with pytest.raises(ValueError, match="not GC statistics"):
        GCStats.from_dict({**data, "generations": [{"collections": 1}]})
    with pytest.raises(ValueError):
        GCWatcher(max_pauses=0)


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert _percentile(values, 0.5) == 50.0 and _percentile(values, 0.99) == 99.0
    assert _percentile([3.0], 0.99) == 3.0 and _percentile([], 0.5) is None


def stats(
    pauses: tuple[float, float, float],
    wall: float,
    collected: int = 0,
    uncollectable: int = 0,
    enabled: bool = True,
) -> GCStats:
    gens = tuple(
        GenStats(10, collected if g == 0 else 0, uncollectable if g == 2 else 0, p, p, p, p)
        for g, p in enumerate(pauses)
    )
    return GCStats(gens, (700, 10, 10), (0, 0, 0), enabled, wall, sum(pauses) / wall, 30)


def test_findings_only_when_the_data_supports_them() -> None:
    assert findings(stats((0.001, 0.001, 0.002), 1.0)) == []
    high = findings(stats((0.01, 0.0, 0.31), 1.0))
    assert len(high) == 1 and high[0].startswith("gen-2 collections took 31% of wall time")
    assert "gc.freeze()" in high[0]
    young = findings(stats((0.2, 0.0, 0.0), 1.0))
    assert young[0].startswith("gen-0 collections took 20%") and "threshold 0 (now 700)" in young[0]
    assert findings(stats((0.004, 0.0, 0.0), 0.01)) == []  # 40 % of 10 ms says nothing
    assert findings(stats((0, 0, 0), 1.0, uncollectable=3))[0].startswith("3 uncollectable objects")
    assert "cycle collector" in findings(stats((0, 0, 0), 1.0, collected=50_000))[0]
    assert "disabled" in findings(stats((0, 0, 0), 1.0, enabled=False))[0]


def test_report_renders_and_serialises() -> None:
    g = vmtop.gc_pressure(make_cycles, 5_000)
    text = g.render_text(width=140)
    assert "GC pressure: make_cycles" in text and "collections" in text and "% of wall" in text
    assert text.count("\n") >= 6
    data = json.loads(g.to_json())
    assert [x["collections"] for x in data["generations"]] == list(g.collections)
    assert data["findings"] == g.findings
    assert format_seconds(None) == "–" and format_seconds(0.0123) == "12.30 ms"
    assert format_seconds(2e-6) == "2.0 µs" and format_seconds(1.5) == "1.500 s"
    with pytest.raises(RuntimeError, match="not run yet"):
        _ = GCPressure().stats
