"""``vmtop.allocations`` and the snapshot analysis, on real tracemalloc snapshots.

tracemalloc's own ``Snapshot.statistics()`` / ``compare_to()`` are the oracle for the fast
aggregation; true sizes come from ``sys.getsizeof``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

import vmtop
from profilers.alloc_analysis import FunctionNames, aggregate, growth
from profilers.alloc_report import AllocationReport
from profilers.allocations import Allocations
from profilers.stacks import StackModel
from profilers.units import format_bytes

# Reads tracemalloc's raw trace tuples: run under every supported Python.
pytestmark = pytest.mark.internals

RawTrace = tuple[int, int, tuple[tuple[str, int], ...], int]
HERE = os.path.abspath(__file__)
PROFILERS_DIR = os.path.dirname(os.path.abspath(aggregate.__code__.co_filename))


def line_of(marker: str) -> int:
    """Line number of the line in this file that ends with ``# <marker>``."""
    lines = Path(HERE).read_text().splitlines()
    found = [i for i, line in enumerate(lines, 1) if line.rstrip().endswith(f"# {marker}")]
    assert len(found) == 1, marker
    return found[0]


@pytest.fixture(autouse=True)
def _tracemalloc_off() -> Iterator[None]:
    assert not tracemalloc.is_tracing()
    yield
    if tracemalloc.is_tracing():
        tracemalloc.stop()
        pytest.fail("tracemalloc was left tracing")


# -- workloads (the markers name the allocating lines) ---------------------------------------------
def keep_ten_mb() -> list[bytes]:
    return [bytes(1_000_000) for _ in range(10)]  # BIG


def keep_small_objects() -> list[tuple[int, str]]:
    return [(i, f"name-{i}") for i in range(100_000)]  # SMALL


LEAK: list[bytearray] = []


def leaky() -> None:
    LEAK.append(bytearray(200_000))  # LEAK


def transient() -> int:
    junk = [bytes(1_000_000) for _ in range(10)]
    return len(junk)


def outer() -> list[list[int]]:
    return [inner() for _ in range(50)]


def inner() -> list[int]:
    return list(range(1000))  # INNER


# -- the report of one call ------------------------------------------------------------------------
def test_ten_megabytes_at_the_right_line_within_ten_percent() -> None:
    m = vmtop.allocations(keep_ten_mb)
    data = m.return_value
    true_size = sum(sys.getsizeof(b) for b in data) + sys.getsizeof(data)
    top = m.top(limit=1)[0]
    assert (top.file, top.line, top.function) == (HERE, line_of("BIG"), "keep_ten_mb")
    assert abs(top.size - true_size) <= 0.10 * true_size
    assert top.count == 11  # ten bytes objects and the list
    assert m.peak is not None and m.peak >= 0.9 * true_size
    assert m.net is not None and abs(m.net - true_size) <= 0.10 * true_size
    assert not tracemalloc.is_tracing()  # started for the call, stopped after


def test_hundred_thousand_small_objects_by_count() -> None:
    m = vmtop.allocations(keep_small_objects, nframe=2)  # few frames: 300k traces stay fast
    data = m.return_value
    true_size = sys.getsizeof(data) + sum(sys.getsizeof(t) + sys.getsizeof(t[1]) for t in data)
    true_size += sum(sys.getsizeof(t[0]) for t in data if t[0] > 256)  # small ints are cached
    top = m.top(by="count", limit=1)[0]
    assert (top.file, top.line) == (HERE, line_of("SMALL"))
    assert top.count >= 200_000  # a tuple and a str per item (and the ints)
    assert abs(top.size - true_size) <= 0.10 * true_size
    by_function = m.top(group="function", limit=1)[0]
    assert (by_function.function, by_function.line) == ("keep_small_objects", 0)
    by_file = m.top(group="file", limit=1)[0]
    assert by_file.file == HERE and by_file.size >= top.size


def test_peak_counts_memory_freed_before_the_end() -> None:
    m = vmtop.allocations(transient)
    assert m.return_value == 10
    assert m.peak_above_start is not None and m.peak_above_start >= 9_500_000
    assert m.net is not None and m.net < 1_000_000
    assert all(site.size < 1_000_000 for site in m.top(limit=None))


def test_growth_finds_the_leak_line() -> None:
    LEAK.clear()

    def leak_five() -> None:
        for _ in range(5):
            leaky()

    m = vmtop.allocations(leak_five)
    grown = m.growth()
    assert (grown[0].file, grown[0].line, grown[0].function) == (HERE, line_of("LEAK"), "leaky")
    assert grown[0].count_diff >= 10  # each bytearray is an object and a buffer
    assert 5 * 200_000 <= grown[0].size_diff <= 5 * 200_000 * 1.1
    LEAK.clear()


def test_diff_of_arbitrary_snapshots_matches_compare_to() -> None:
    LEAK.clear()
    tracemalloc.start(2)
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(3):
            leaky()
        keep = keep_small_objects()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ours = vmtop.allocations.diff(before, after)
    assert ours[0].line == line_of("SMALL") and ours[0].count_diff >= len(keep) * 2
    leak = next(d for d in ours if d.line == line_of("LEAK"))
    assert leak.count_diff >= 6 and leak.size_diff >= 600_000
    # Unfiltered, every line's change is tracemalloc's own.
    theirs = {
        (d.traceback[0].filename, d.traceback[0].lineno): (d.size_diff, d.count_diff)
        for d in after.compare_to(before, "lineno")
        if d.size_diff or d.count_diff
    }
    mine = {
        (d.file, d.line): (d.size_diff, d.count_diff) for d in growth(before, after, exclude=())
    }
    assert mine == theirs
    LEAK.clear()


def test_with_block_and_async_function() -> None:
    with vmtop.allocations(nframe=5) as m:
        kept = keep_ten_mb()
    assert isinstance(m, Allocations)
    assert m.top(limit=1)[0].line == line_of("BIG")
    assert m.nframe == 5 and "with block at" in m.name
    del kept

    async def load() -> list[bytes]:
        await asyncio.sleep(0)
        return keep_ten_mb()

    a = vmtop.allocations(load)
    assert len(a.return_value) == 10
    assert a.top(limit=1)[0].line == line_of("BIG")


def test_async_with_block() -> None:
    async def main() -> Allocations:
        async with vmtop.allocations() as m:
            await asyncio.sleep(0)
            data = keep_ten_mb()
        assert len(data) == 10
        return m

    m = asyncio.run(main())
    assert m.top(limit=1)[0].line == line_of("BIG")
    assert "async with block at" in m.name


def test_already_tracing_is_left_on_with_its_frame_limit() -> None:
    LEAK.clear()
    tracemalloc.start(3)
    try:
        leaky()  # traced before the measurement: not growth
        m = vmtop.allocations(keep_ten_mb)
        assert tracemalloc.is_tracing() and tracemalloc.get_traceback_limit() == 3
    finally:
        tracemalloc.stop()
    assert m.was_tracing and m.nframe == 3
    assert any("already tracing (3 frames, not the 25 asked for)" in n for n in m.notes())
    assert [s.line for s in m.top(limit=2)] == [line_of("BIG"), line_of("LEAK")]
    grown = m.growth()
    assert grown[0].line == line_of("BIG")
    assert all(d.line != line_of("LEAK") for d in grown)  # older than the measurement
    text = m.render_text(width=160)
    assert "Growth since the start" in text and "already tracing" in text
    LEAK.clear()


def test_exception_propagates_and_tracing_stops() -> None:
    def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        vmtop.allocations(boom)
    assert not tracemalloc.is_tracing()
    with pytest.raises(ValueError, match="nframe must be between 1 and 65535"):
        vmtop.allocations(keep_ten_mb, nframe=0)
    with pytest.raises(TypeError):
        vmtop.allocations(42)


# -- the stack model and the writers ---------------------------------------------------------------
def test_stack_model_is_root_first_without_our_frames(tmp_path: Path) -> None:
    m = vmtop.allocations(outer)
    model = m.stacks
    assert model.unit == "bytes"
    stacks = [(frames, w) for frames, w in model.items() if frames[-1].line == line_of("INNER")]
    assert stacks, "no stack ends at the allocating line"
    frames, weight = max(stacks, key=lambda item: item[1])
    names = [f.function for f in frames]
    assert names[:2] == ["outer", "inner"], names  # the measured function is the root
    assert weight >= 50 * sys.getsizeof(list(range(1000))) * 0.9
    assert not any(f.file.startswith(PROFILERS_DIR) for f in model.frames)
    assert not any("tracemalloc" in f.file for f in model.frames)
    assert model.total == m.traced

    path = tmp_path / "alloc.folded"
    assert m.save(path) == "folded"
    back = StackModel.from_folded(path.read_text(), unit="bytes")
    assert back.total == model.total
    assert any(f.function == "inner" and f.line == line_of("INNER") for f in back.frames)
    assert m.save(tmp_path / "alloc.svg") == "svg"
    assert (tmp_path / "alloc.svg").read_text().lstrip().startswith("<")
    counts = m.stack_model(by="count")
    assert counts.unit == "count" and counts.total == m.blocks
    with pytest.raises(ValueError, match="unknown output format '.png'"):
        m.save(tmp_path / "alloc.png")


def test_with_block_stacks_start_at_the_block() -> None:
    with vmtop.allocations() as m:
        kept = outer()
    roots = {frames[0].function for frames, _ in m.stacks.items()}
    assert roots == {"test_with_block_stacks_start_at_the_block"}  # no pytest frames above
    assert any(f.function == "inner" for f in m.stacks.frames)
    assert m.stacks.total == m.traced
    del kept


def test_report_renders_and_serialises() -> None:
    m = vmtop.allocations(keep_ten_mb)
    text = m.render_text(width=140)
    assert "Allocations: keep_ten_mb" in text and "keep_ten_mb" in text
    assert f"test_allocations.py:{line_of('BIG')}" in text
    assert "9.5 MiB" in text  # 10 x 1,000,033 bytes + the list
    data = json.loads(m.to_json())
    assert data["top_by_bytes"][0]["line"] == line_of("BIG")
    assert data["peak_bytes"] >= 10_000_000
    view = m.view(by="count", group="file", limit=3)
    assert "Top 1 files by live blocks" in view.render_text(width=140) or "files" in str(view)
    assert format_bytes(512) == "512 B" and format_bytes(-1536, sign=True) == "-1.5 KiB"
    assert format_bytes(10 * 2**20, sign=True) == "+10.0 MiB"


# -- the analysis on its own: oracles and other processes ------------------------------------------
def test_aggregation_equals_tracemalloc_statistics() -> None:
    tracemalloc.start(10)
    try:
        leaky()
        kept = [outer(), keep_ten_mb(), [str(i) for i in range(5000)]]
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    agg = aggregate(snapshot, exclude=())
    for key_type, group in (("lineno", "line"), ("filename", "file")):
        theirs = {
            (s.traceback[0].filename, s.traceback[0].lineno if group == "line" else 0): (
                s.size,
                s.count,
            )
            for s in snapshot.statistics(key_type)
        }
        mine = {(s.file, s.line): (s.size, s.count) for s in agg.sites(group)}  # type: ignore[arg-type]
        assert mine == theirs
    per_traceback = {
        tuple(reversed(s.traceback._frames)): (s.size, s.count)  # type: ignore[attr-defined]
        for s in snapshot.statistics("traceback")
    }
    assert {tb: tuple(v) for tb, v in agg.stacks.items()} == per_traceback
    assert agg.size == sum(s.size for s in snapshot.statistics("lineno"))
    del kept
    LEAK.clear()


def test_aggregation_and_growth_match_tracemalloc_on_any_traces() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    frame = st.tuples(st.sampled_from(["a.py", "b.py", "<frozen x>", "c.py"]), st.integers(0, 6))
    trace = st.tuples(
        st.integers(0, 1),
        st.integers(1, 5000),
        st.lists(frame, min_size=1, max_size=4).map(tuple),
        st.integers(1, 9),
    )

    @hypothesis.settings(max_examples=60, deadline=None)
    @hypothesis.given(st.lists(trace, max_size=60), st.lists(trace, max_size=60))
    def check(old: list[RawTrace], new: list[RawTrace]) -> None:
        before = tracemalloc.Snapshot(old, 4)
        after = tracemalloc.Snapshot(new, 4)
        agg = aggregate(after, exclude=())
        theirs = {
            (s.traceback[0].filename, s.traceback[0].lineno): (s.size, s.count)
            for s in after.statistics("lineno")
        }
        assert {(s.file, s.line): (s.size, s.count) for s in agg.sites("line")} == theirs
        diff = {
            (d.traceback[0].filename, d.traceback[0].lineno): (d.size, d.size_diff, d.count_diff)
            for d in after.compare_to(before, "lineno")
            if d.size_diff or d.count_diff
        }
        mine = {
            (d.file, d.line): (d.size, d.size_diff, d.count_diff)
            for d in growth(before, after, exclude=())
        }
        assert mine == diff

    check()


def test_snapshot_from_another_process(tmp_path: Path) -> None:
    program = tmp_path / "target.py"
    program.write_text(
        textwrap.dedent(
            """
            import sys, tracemalloc
            tracemalloc.start(4)
            class Cache:
                def fill(self):
                    self.rows = [str(i) * 10 for i in range(50_000)]
            c = Cache()
            c.fill()
            tracemalloc.take_snapshot().dump(sys.argv[1])
            """
        )
    )
    dump = tmp_path / "snap.bin"
    subprocess.run([sys.executable, str(program), str(dump)], check=True, timeout=60)
    snapshot = tracemalloc.Snapshot.load(str(dump))
    top = aggregate(snapshot).top(limit=1)[0]
    assert (top.file, top.line, top.function) == (str(program), 6, "Cache.fill")
    assert top.count >= 50_000
    report = AllocationReport(snapshot, name="remote")
    assert report.top(limit=1)[0] == top and report.peak is None and report.net is None
    assert "Cache.fill" in report.render_text(width=140)


def test_function_names_from_source(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        textwrap.dedent(
            """\
            X = [1]
            class A:
                y = [2]
                def m(self):
                    def local():
                        return [3]
                    return local()
            async def co():
                return [4]
            """
        )
    )
    names = FunctionNames()
    path = str(source)
    got = [names.name(path, n) for n in range(1, 10)]
    assert got == [
        "<module>",
        "A",
        "A",
        "A.m",
        "A.m.<locals>.local",
        "A.m.<locals>.local",
        "A.m",
        "co",
        "co",
    ]
    assert names.name(path, 99) is None
    assert names.name("<string>", 1) is None
    assert names.name(str(tmp_path / "missing.py"), 1) is None
    frozen = names.name("<frozen importlib._bootstrap>", 1)
    assert frozen == "<module>"  # resolved through the stdlib file
    source.write_text("def renamed():\n    return 1\n" + "\n" * 20)  # a changed file is re-read
    names.refresh()
    assert names.name(path, 2) == "renamed"


def test_aggregation_leaves_gc_as_it_was() -> None:
    tracemalloc.start(1)
    try:
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    gc.disable()
    try:
        aggregate(snapshot)
        assert not gc.isenabled()
    finally:
        gc.enable()
    aggregate(snapshot)
    assert gc.isenabled()
