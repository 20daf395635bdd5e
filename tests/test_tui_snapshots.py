"""Snapshot tests of every TUI screen (pytest-textual-snapshot; ``--snapshot-update`` to
accept a change after looking at it).

Deterministic by construction: the app reads a *recorded* demo (tests/targets/tui_recorded.py
— fixed input data, replayed the way the agent answers; the TUI itself is the real one), the
clock text is frozen, the recording's eight snapshots are all drawn before any key is
pressed, and each step waits for the snapshot it caused.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

sys.path.insert(0, str(Path(__file__).resolve().parent / "targets"))

from tui_recorded import RecordedSource  # noqa: E402

from vmtop.tui.app import VmtopApp  # noqa: E402
from vmtop.tui.widgets.detail import DetailScreen  # noqa: E402

BIG = (160, 48)
SMALL = (80, 24)

Compare = Callable[..., bool]


def make_app() -> tuple[VmtopApp, RecordedSource]:
    source = RecordedSource()
    app = VmtopApp(source, interval=0.01, clock=lambda taken_at: "12:00:00")
    return app, source


async def all_recorded(app: VmtopApp, pilot: Pilot[Any]) -> None:
    """Wait until every recorded snapshot has been drawn (the history is complete)."""
    source = app.source.source
    assert isinstance(source, RecordedSource)
    await app.wait_until(lambda: app.history.count == len(source.snapshots))
    await pilot.pause()  # the header has grown: the table's height is final
    await app.wait_until(app.limit_settled)  # rows fetched for that height
    app.reader.update(interval=3600)  # the recording is over: fetch only when asked
    await pilot.pause()


async def select(app: VmtopApp, pilot: Pilot[Any], name: str) -> None:
    """Cursor to the row named ``name``; then wait for the snapshot fetched for the new
    scroll position (the app asks for the rows on screen plus a margin)."""
    key = next(k for k, v in app.table.views.items() if v.name == name)
    app.table.move_cursor(row=app.table.get_row_index(key), animate=False)
    await pilot.pause()
    await app.wait_until(app.limit_settled)
    await pilot.pause()


def shot(
    compare: Compare,
    steps: Callable[[VmtopApp, Pilot[Any]], Awaitable[None]],
    size: tuple[int, int],
) -> bool:
    app, _ = make_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await all_recorded(app, pilot)
        await steps(app, pilot)
        await pilot.pause()

    return compare(app, terminal_size=size, run_before=run_before)


async def nothing(app: VmtopApp, pilot: Pilot[Any]) -> None:
    pass


@pytest.mark.parametrize("size", [SMALL, BIG], ids=["80x24", "160x48"])
def test_main_screen(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert shot(snap_compare, nothing, size)


def test_sorted_by_mailbox(snap_compare: Compare) -> None:
    async def steps(app: VmtopApp, pilot: Pilot[Any]) -> None:
        await pilot.press("m")
        await app.wait_for_snapshot(lambda s: s.sort == "mailbox")

    assert shot(snap_compare, steps, BIG)


def test_totals_threads_only(snap_compare: Compare) -> None:
    async def steps(app: VmtopApp, pilot: Pilot[Any]) -> None:
        await pilot.press("a", "2")
        await app.wait_for_snapshot(
            lambda s: s.accumulate and {r.kind for r in s.rows} == {"thread"}
        )

    assert shot(snap_compare, steps, SMALL)


def test_filter(snap_compare: Compare) -> None:
    async def steps(app: VmtopApp, pilot: Pilot[Any]) -> None:
        await pilot.press("slash")
        app.filter_box.cursor_blink = False
        await pilot.press(*"worker")
        await app.wait_for_snapshot(lambda s: app.state.filter == "worker")

    assert shot(snap_compare, steps, BIG)


def test_detail(snap_compare: Compare) -> None:
    async def steps(app: VmtopApp, pilot: Pilot[Any]) -> None:
        await select(app, pilot, "slow-consumer")
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        await app.wait_until(lambda: screen.fetches >= 1)

    assert shot(snap_compare, steps, BIG)


def test_detail_small(snap_compare: Compare) -> None:
    async def steps(app: VmtopApp, pilot: Pilot[Any]) -> None:
        await select(app, pilot, "slow-consumer")
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        await app.wait_until(lambda: screen.fetches >= 1)

    assert shot(snap_compare, steps, SMALL)


def test_help(snap_compare: Compare) -> None:
    async def steps(app: VmtopApp, pilot: Pilot[Any]) -> None:
        await pilot.press("question_mark")

    assert shot(snap_compare, steps, SMALL)


def test_cancel_confirmation(snap_compare: Compare) -> None:
    async def steps(app: VmtopApp, pilot: Pilot[Any]) -> None:
        await select(app, pilot, "blocker")
        await pilot.press("k")

    assert shot(snap_compare, steps, BIG)


def test_target_lost_banner(snap_compare: Compare) -> None:
    async def steps(app: VmtopApp, pilot: Pilot[Any]) -> None:
        source = app.source.source
        assert isinstance(source, RecordedSource)
        source.die()
        app.reader.update(now=True)
        await app.wait_until(lambda: app.lost_reason is not None)

    assert shot(snap_compare, steps, BIG)
