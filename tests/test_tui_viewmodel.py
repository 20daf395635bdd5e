"""The TUI's view model: pure functions from snapshot records to cells, colours and history,
tested without a terminal on real records (built here, or recorded from the demo)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "targets"))

from tui_recorded import RecordedSource  # noqa: E402

from vmtop.records import GenGC, GroupRow, LoopStats, NodeInfo, ProcessRow, Snapshot  # noqa: E402
from vmtop.tui import viewmodel  # noqa: E402


def node(**kw: object) -> NodeInfo:
    base = dict(
        pid=42,
        argv=("app.py",),
        python="3.11.7",
        implementation="CPython",
        uptime=3725.0,
        cpu_percent=12.5,
        rss=50 * 1024 * 1024,
        threads=2,
        tasks=3,
    )
    base.update(kw)
    return NodeInfo(**base)  # type: ignore[arg-type]


def task(n: int, name: str, **kw: object) -> ProcessRow:
    base: dict[str, object] = dict(
        key=f"task:{n}", kind="task", id=str(n), name=name, state="waiting"
    )
    base.update(kw)
    return ProcessRow(**base)  # type: ignore[arg-type]


def snap(rows: tuple[ProcessRow, ...], taken_at: float = 1.0, **kw: object) -> Snapshot:
    base = dict(
        node=node(),
        rows=rows,
        sort="reductions",
        accumulate=False,
        interval=1.0,
        total_rows=len(rows),
        taken_at=taken_at,
        cost=0.001,
    )
    base.update(kw)
    return Snapshot(**base)  # type: ignore[arg-type]


def cell(view: viewmodel.RowView, column: str) -> viewmodel.Cell:
    return view.cells[viewmodel.COLUMN_KEYS.index(column)]


# -- columns -----------------------------------------------------------------------------------
@pytest.mark.parametrize("total", [80, 100, 140, 160, 250])
def test_columns_fill_the_width(total: int) -> None:
    widths = viewmodel.column_widths(total)
    assert list(widths) == [c.key for c in viewmodel.COLUMNS if not c.rest] + ["current"]
    used = sum(w + viewmodel.GAP for w in widths.values()) + 2  # + scrollbar
    assert used == total
    assert widths["current"] >= 12


def test_columns_grow_between_80_and_140() -> None:
    narrow, wide = viewmodel.column_widths(80), viewmodel.column_widths(140)
    assert narrow["name"] == 14 and wide["name"] == 26
    assert viewmodel.column_widths(110)["name"] == 20


# -- cells and colours -------------------------------------------------------------------------
def test_hog_busy_and_idle_time_share() -> None:
    hog = viewmodel.row_view(
        task(1, "hog", time=0.6, reductions=10), interval=1.0, accumulate=False
    )
    busy = viewmodel.row_view(task(2, "busy", time=0.3, reductions=10), 1.0, False)
    idle = viewmodel.row_view(task(3, "idle", time=0.1, reductions=10), 1.0, False)
    assert hog.marks == {"hog"} and cell(hog, "time").style == viewmodel.STYLES["hog"]
    assert cell(hog, "name").style == viewmodel.STYLES["hog"]
    assert busy.marks == {"busy"} and cell(busy, "time").style == viewmodel.STYLES["busy"]
    assert idle.marks == set() and cell(idle, "time").style == ""
    # The share is of the interval the snapshot covers: 0.6 s of 2 s is only busy.
    assert viewmodel.row_view(task(1, "hog", time=0.6), interval=2.0, accumulate=False).marks == {
        "busy"
    }


def test_growing_mailbox_is_marked_against_the_previous_snapshot() -> None:
    row = task(1, "inbox", mailbox=20)
    assert viewmodel.row_view(row, 1.0, False, mailbox_before=10).marks == {"grow"}
    assert cell(viewmodel.row_view(row, 1.0, False, mailbox_before=10), "mailbox").text == "20↑"
    assert viewmodel.row_view(row, 1.0, False, mailbox_before=20).marks == set()
    assert viewmodel.row_view(row, 1.0, False, mailbox_before=30).marks == set()
    assert viewmodel.row_view(row, 1.0, False, mailbox_before=None).marks == set()
    flood = viewmodel.row_view(task(1, "inbox", mailbox=5000), 1.0, False, mailbox_before=4000)
    assert flood.marks == {"flood"}
    assert cell(flood, "mailbox").style == viewmodel.STYLES["flood"]


def test_unmeasured_values_are_a_dash_never_zero() -> None:
    view = viewmodel.row_view(task(1, "t"), 1.0, False)
    for column in ("reductions", "time", "mailbox", "memory"):
        assert cell(view, column).text == "–"
        assert cell(view, column).style == "dim"
    zero = viewmodel.row_view(task(1, "t", reductions=0, mailbox=0), 1.0, False)
    assert cell(zero, "reductions").text == "0"
    assert cell(zero, "mailbox").text == "0"


def test_totals_toggle_shows_totals() -> None:
    row = task(1, "t", reductions=5, reductions_total=5000, time=0.01, time_total=12.5)
    assert cell(viewmodel.row_view(row, 1.0, accumulate=False), "reductions").text == "5"
    assert cell(viewmodel.row_view(row, 1.0, accumulate=True), "reductions").text == "5000"
    assert cell(viewmodel.row_view(row, 1.0, accumulate=True), "time").text == "12.50s"


def test_threads_queues_and_current_function() -> None:
    thread = ProcessRow(
        key="thread:77", kind="thread", id="77", name="disk-writer", state="sleeping"
    )
    assert cell(viewmodel.row_view(thread, 1.0, False), "id").text == "T77"
    queue = ProcessRow(
        key="queue:3", kind="queue", id="q3", name="Queue#3", state="shared", mailbox=8,
        consumers=3, putters=1,
    )  # fmt: skip
    assert viewmodel.current_text(queue) == "shared queue: 3 consumers, 1 blocked putters"
    from vmtop.records import Location

    waiting = task(
        1, "t", current=Location("Actor.run", "/x/actors.py", 98), waiting_on="Queue.get"
    )
    assert viewmodel.current_text(waiting) == "Actor.run (actors.py:98) ⟵ Queue.get"


def test_text_columns_reorder_the_selected_rows() -> None:
    rows = (task(1, "b", state="ready"), task(2, "a"), task(10, "c", state="blocked"))
    assert [r.name for r in viewmodel.ordered_rows(rows, None)] == ["b", "a", "c"]
    assert [r.name for r in viewmodel.ordered_rows(rows, "name")] == ["a", "b", "c"]
    assert [r.id for r in viewmodel.ordered_rows(rows, "id")] == ["1", "2", "10"]
    assert [r.state for r in viewmodel.ordered_rows(rows, "state")] == [
        "blocked",
        "ready",
        "waiting",
    ]


# -- view state --------------------------------------------------------------------------------
def test_sort_keys_agent_or_client_side() -> None:
    state = viewmodel.ViewState()
    state.set_sort("mailbox")
    assert (state.sort, state.order) == ("mailbox", None)
    state.set_sort("name")
    assert (state.sort, state.order, state.sort_column()) == ("mailbox", "name", "name")
    assert state.request().sort == "mailbox"  # the agent still selects by mailbox
    with pytest.raises(ValueError):
        state.set_sort("colour")


def test_cycle_sort_visits_every_column_and_wraps() -> None:
    state = viewmodel.ViewState()
    seen = [state.cycle_sort(1) for _ in viewmodel.COLUMN_KEYS]
    assert sorted(seen) == sorted(viewmodel.COLUMN_KEYS)
    assert state.sort_column() == "reductions"
    assert state.cycle_sort(-1) == "name"


def test_interval_steps_are_clamped() -> None:
    state = viewmodel.ViewState(interval=1.0)
    assert state.change_interval(1) == 2.0
    for _ in range(20):
        state.change_interval(1)
    assert state.interval == viewmodel.INTERVALS[-1]
    for _ in range(20):
        state.change_interval(-1)
    assert state.interval == viewmodel.INTERVALS[0]


def test_request_follows_the_state() -> None:
    state = viewmodel.ViewState(kinds="threads", filter="io", accumulate=True, limit=33)
    assert state.request().kwargs() == {
        "sort": "reductions",
        "limit": 33,
        "filter": "io",
        "accumulate": True,
        "kinds": ("thread",),
        "groups": 20,
    }
    state.groups = True  # the group view asks for a screenful of groups
    assert state.request().kwargs()["groups"] == 33


def test_group_rows_fill_the_process_columns() -> None:
    group = GroupRow(
        key="group:item@app.py:12",
        coro="item",
        file="/srv/app.py",
        line=12,
        live=3,
        started=200,
        finished=198,
        failed=1,
        reductions=600,
        time=0.5,
        lifetime_p50=0.0012,
        lifetime_p99=0.0051,
    )
    view = viewmodel.group_view(group, interval=2.0, accumulate=False)
    texts = [c.text for c in view.cells]
    assert (view.kind, texts[0], texts[1], texts[2], texts[6]) == (
        "group",
        "grp",
        "item",
        "600",
        "3 live",
    )
    assert texts[4] == texts[5] == "–"  # a group has no mailbox or memory of its own
    assert "100/s started, 99/s done (1 failed/cancelled)" in texts[7]
    assert "life p50 1.2ms p99 5.1ms" in texts[7] and "app.py:12" in texts[7]
    assert "busy" in view.marks  # 0.5 s of a 2 s interval in its steps


def test_fetch_limit_is_what_is_visible_plus_a_margin() -> None:
    assert viewmodel.fetch_limit(30) == 30 + viewmodel.LIMIT_MARGIN
    assert viewmodel.fetch_limit(30, first_visible=100) == 140
    assert viewmodel.fetch_limit(1) == viewmodel.MIN_LIMIT
    assert viewmodel.fetch_limit(10**6) == viewmodel.MAX_LIMIT


# -- history -----------------------------------------------------------------------------------
def test_history_ignores_a_repeated_snapshot() -> None:
    h = viewmodel.History()
    s = snap((task(1, "a", reductions=5, mailbox=1),))
    assert h.push(s)
    assert not h.push(s)
    assert h.count == 1 and len(h.node) == 1
    assert h.push(dataclasses.replace(s, taken_at=2.0))
    assert list(h.of("task:1").reductions) == [5, 5]  # type: ignore[union-attr]


def test_history_remembers_the_previous_mailbox() -> None:
    h = viewmodel.History()
    h.push(snap((task(1, "a", mailbox=3),), taken_at=1.0))
    h.push(snap((task(1, "a", mailbox=7),), taken_at=2.0))
    assert h.mailbox_before("task:1") == 3
    views = viewmodel.table_rows(
        snap((task(1, "a", mailbox=7),), taken_at=2.0), viewmodel.ViewState(), h
    )
    assert views[0].marks == {"grow"}


def test_history_is_bounded() -> None:
    h = viewmodel.History(size=5, max_keys=3)
    for i in range(10):
        h.push(snap((task(i, f"t{i}", reductions=i),), taken_at=float(i)))
    assert len(h.node) == 5
    assert list(h.processes) == ["task:7", "task:8", "task:9"]


def test_node_series() -> None:
    h = viewmodel.History()
    loops = (LoopStats("loop-main", "MainThread", 1, 3, 0, lag_p99=0.002),)
    gc0 = GenGC(collections=5, collected=10, uncollectable=0, pause_total=0.010, pause_max=0.004)
    rows = (task(1, "a", reductions=30), task(2, "b", reductions=10))
    s1 = snap(rows, 1.0, node=node(loops=loops, gc=(gc0,)), interval=2.0, total_rows=5)
    gc1 = dataclasses.replace(gc0, pause_total=0.030)
    s2 = dataclasses.replace(s1, taken_at=2.0, node=node(loops=loops, gc=(gc1,)))
    h.push(s1)
    h.push(s2)
    first, second = h.node
    assert second.reductions_per_s == 20.0  # 40 steps in 2 s
    assert second.reductions_partial  # 2 of 5 rows: a lower bound
    assert second.lag == 0.002
    assert first.gc_per_s is None  # no previous total to subtract
    assert second.gc_per_s == pytest.approx(0.010)  # 20 ms of GC pause in 2 s
    labels = {s.label: s.value for s in viewmodel.sparks(h, 10)}
    assert labels == {"rss": "50.0 MiB", "lag": "2.0ms", "reds/s": "≥20", "gc": "1.0%"}


# -- header and status -------------------------------------------------------------------------
def test_sparkline() -> None:
    assert viewmodel.sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8) == "▁▂▃▄▅▆▇█"
    assert viewmodel.sparkline([None, 7], 4) == "   █"
    assert viewmodel.sparkline([], 3) == "   "
    assert viewmodel.sparkline([5, 5], 2) == "██"
    assert viewmodel.sparkline([100, 101], 2, relative=True) == "▁█"
    assert viewmodel.sparkline([0, 0], 2) == "▁▁"
    assert len(viewmodel.sparkline(range(100), 10)) == 10


def test_pack_fills_lines_in_order() -> None:
    assert viewmodel.pack(["aaa", "bb", "cccc"], 9) == ["aaa  bb", "cccc"]
    assert viewmodel.pack(["a" * 20], 10) == ["a" * 9 + "…"]


def test_header_parts_say_their_units() -> None:
    loops = (LoopStats("loop-main", "MainThread", 1, 3, 4, 0.001, 0.02, 0.3),)
    parts = viewmodel.node_parts(node(loops=loops), clock="12:00:00")
    assert parts == [
        "up 1:02:05",
        "cpu 12.5%",
        "rss 50.0 MiB",
        "tasks 3",
        "threads 2",
        "run queue 4",
        "12:00:00",
    ]
    assert viewmodel.lag_parts(node(loops=loops)) == ["lag 1.0ms/20.0ms/300.0ms p50/p99/max"]
    assert viewmodel.lag_parts(node()) == ["lag – (no event loop)"]
    assert viewmodel.gc_parts(node()) == ["gc –"]
    blocked = dataclasses.replace(loops[0], blocked_for=2.5)
    assert viewmodel.blocked_lines(snap((), node=node(loops=(blocked,)))) == [
        "loop-main BLOCKED for 2.50s"
    ]


def test_status_line() -> None:
    state = viewmodel.ViewState(filter="io", paused=True, kinds="tasks")
    text = viewmodel.status_text(snap((task(1, "a"),), total_rows=9), state)
    assert (
        text == "per 1.00 s · 1/9 rows · sort reductions · tasks · filter 'io' · every 1 s · PAUSED"
    )


# -- on the recorded demo ----------------------------------------------------------------------
def test_recorded_demo_rows() -> None:
    source = RecordedSource()
    h = viewmodel.History()
    state = viewmodel.ViewState()
    views: list[viewmodel.RowView] = []
    for _ in source.snapshots:
        s = source.snapshot(limit=100)
        h.push(s)
        views = viewmodel.table_rows(s, state, h)
    by_name = {v.name: v for v in views}
    # The slow consumer's mailbox grows in every snapshot of the recording.
    assert "grow" in by_name["slow-consumer"].marks
    assert cell(by_name["slow-consumer"], "mailbox").text.endswith("↑")
    # The cruncher spends a large share of each interval in its steps.
    assert by_name["cruncher"].marks & {"busy", "hog"}
    assert cell(by_name["disk-writer"], "id").text.startswith("T")
    assert len(h.of("task:2").mailbox or ()) >= 1  # type: ignore[union-attr]
