"""The TUI driven by Textual pilots against a real agent in a real target process.

The target (tests/targets/tui_target.py) runs under ``vmtop run``; the app connects with
AgentClient like ``vmtop attach`` does. Waits are on the app's own events (a snapshot drawn,
the target lost), never on sleeps.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Input, Static

from vmtop.client import AgentClient
from vmtop.paths import socket_path
from vmtop.records import Snapshot
from vmtop.tui.app import VmtopApp
from vmtop.tui.widgets.confirm import ConfirmCancel
from vmtop.tui.widgets.detail import DetailScreen
from vmtop.tui.widgets.header import StatusLine
from vmtop.tui.widgets.report import ExportPrompt, ReportScreen

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "tests" / "targets" / "tui_target.py"

Scenario = Callable[[VmtopApp, Pilot[Any], subprocess.Popen[str]], Awaitable[None]]


@pytest.fixture
def target() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmtop", "run", "--quiet", str(TARGET), "60"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        assert socket_path(proc.pid).exists()
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def drive(
    proc: subprocess.Popen[str], scenario: Scenario, size: tuple[int, int] = (120, 40)
) -> VmtopApp:
    async def main() -> VmtopApp:
        app = VmtopApp(AgentClient(proc.pid).connect(), pid=proc.pid, interval=0.5)
        async with app.run_test(size=size) as pilot:
            await app.wait_for_snapshot()
            await scenario(app, pilot, proc)
        return app

    return asyncio.run(main())


async def export(app: VmtopApp, pilot: Pilot[Any], path: Path) -> ExportPrompt:
    """Press ``e`` on a report screen and export to ``path``; returns the prompt that asked."""
    await pilot.press("e")
    prompt = app.screen
    assert isinstance(prompt, ExportPrompt)
    prompt.query_one(Input).value = str(path)
    await pilot.press("enter")
    await pilot.pause()
    return prompt


def plain(renderable: Any) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def inbox_known(snap: Snapshot) -> bool:
    """The agent has seen "inbox" dequeue (it learns a queue's consumer that way, after the
    hooks are in): until then no task has a mailbox to sort by."""
    return any(r.name == "inbox" and r.mailbox for r in snap.rows)


def names(app: VmtopApp) -> list[str]:
    return [app.table.views[k].name for k in app.table.order]


def first_row(app: VmtopApp) -> str:
    """The name in the table's first row, read from the DataTable itself."""
    return str(app.table.get_row_at(0)[1]).strip()


def test_sorting_by_mailbox_changes_the_first_row(target: subprocess.Popen[str]) -> None:
    async def scenario(app: VmtopApp, pilot: Pilot[Any], proc: Any) -> None:
        await app.wait_for_snapshot(
            lambda s: s.rows[0].name == "hot" and inbox_known(s)  # see inbox_known
        )
        assert first_row(app) == "hot"
        await pilot.press("m")
        snap = await app.wait_for_snapshot(lambda s: s.sort == "mailbox")
        assert snap.rows[0].name == "inbox"
        assert (snap.rows[0].mailbox or 0) > 0
        assert first_row(app) == "inbox"
        assert "MBOX▼" in str(app.table.columns["mailbox"].label)  # type: ignore[index]

    drive(target, scenario)


def test_clicking_a_header_sorts_by_that_column(target: subprocess.Popen[str]) -> None:
    async def scenario(app: VmtopApp, pilot: Pilot[Any], proc: Any) -> None:
        await app.wait_for_snapshot(lambda s: s.rows[0].name == "hot" and inbox_known(s))
        await pilot.pause()  # let the layout follow the header's new height
        assert await pilot.click("#processes", offset=(_x(app, "mailbox") + 2, 0))
        await app.wait_for_snapshot(lambda s: s.sort == "mailbox")
        assert first_row(app) == "inbox"
        await pilot.press("greater_than_sign")  # next column after mailbox: memory
        await app.wait_for_snapshot(lambda s: s.sort == "memory")
        assert app.state.sort_column() == "memory"

    drive(target, scenario)


def _x(app: VmtopApp, column: str) -> int:
    """Where ``column`` starts in the table."""
    x = 0
    for key, col in app.table.columns.items():
        if key.value == column:
            return x
        x += col.get_render_width(app.table)
    raise KeyError(column)


def test_filter_hides_rows(target: subprocess.Popen[str]) -> None:
    async def scenario(app: VmtopApp, pilot: Pilot[Any], proc: Any) -> None:
        await app.wait_for_snapshot(lambda s: "beta-1" in [r.name for r in s.rows])
        assert "beta-1" in names(app)
        await pilot.press("slash", *"alpha", "enter")
        await app.wait_for_snapshot(lambda s: app.state.filter == "alpha" and len(s.rows) == 3)
        assert sorted(names(app)) == ["alpha-1", "alpha-2", "alpha-3"]
        assert app.table.row_count == 3
        assert app.focused is app.table
        await pilot.press("slash", "escape")  # escape clears the filter
        await app.wait_for_snapshot(lambda s: not app.state.filter and len(s.rows) > 3)
        assert "beta-1" in names(app)

    drive(target, scenario)


def test_detail_shows_the_selected_task(target: subprocess.Popen[str]) -> None:
    async def scenario(app: VmtopApp, pilot: Pilot[Any], proc: Any) -> None:
        await pilot.press("slash", *"victim", "enter")
        await app.wait_for_snapshot(lambda s: [r.name for r in s.rows] == ["victim"])
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        await app.wait_until(lambda: screen.fetches >= 1 or bool(screen.error))
        assert screen.error == ""
        assert screen.data is not None
        assert screen.data["name"] == "victim"
        chain = screen.data["await_chain"]
        assert chain[0]["function"] == "victim"
        assert chain[0]["file"].endswith("tui_target.py")
        assert chain[0]["code"] == "await asyncio.Event().wait()"
        body = plain(screen.query_one("#detail-body", Static).content)
        assert "await asyncio.Event().wait()" in body
        assert "Memory (estimate)" in body
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)

    drive(target, scenario)


def test_detail_screen_asks_the_app_for_a_task_profile(target: subprocess.Popen[str]) -> None:
    async def scenario(app: VmtopApp, pilot: Pilot[Any], proc: Any) -> None:
        app.report_seconds = 0.5
        await pilot.press("slash", *"victim", "enter")
        await app.wait_for_snapshot(lambda s: [r.name for r in s.rows] == ["victim"])
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        await pilot.press("P")  # the screen posts ProfileRequested; the app opens the report
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ReportScreen)
        assert (screen.kind, screen.task_name) == ("profile", "victim")
        await pilot.press("escape")
        assert isinstance(app.screen, DetailScreen)

    drive(target, scenario)


def test_gc_report_screen_runs_the_job_and_exports_json(
    target: subprocess.Popen[str], tmp_path: Path
) -> None:
    out = tmp_path / "gc.json"

    async def scenario(app: VmtopApp, pilot: Pilot[Any], proc: Any) -> None:
        app.report_seconds = 0.3
        await pilot.press("G")
        screen = app.screen
        assert isinstance(screen, ReportScreen)
        await app.wait_until(lambda: screen.done, timeout=30)
        assert screen.error == ""
        assert type(screen.report).__name__ == "GCReport"
        prompt = await export(app, pilot, out)
        assert prompt.formats == ".json"
        assert screen.exported == f"{out} (json)"

    drive(target, scenario)
    assert json.loads(out.read_text())["wall_s"] > 0


def test_cancel_asks_then_cancels_the_task(target: subprocess.Popen[str]) -> None:
    async def scenario(app: VmtopApp, pilot: Pilot[Any], proc: Any) -> None:
        await pilot.press("slash", *"victim", "enter")
        await app.wait_for_snapshot(lambda s: [r.name for r in s.rows] == ["victim"])
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmCancel)
        await pilot.press("n")  # no: nothing happens
        assert not isinstance(app.screen, ConfirmCancel)
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmCancel)
        await pilot.press("y")
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 10)
        assert line.strip() == "victim cancelled"
        await app.wait_for_snapshot(lambda s: not s.rows)  # the task is gone

    drive(target, scenario)


def test_banner_when_the_target_dies(target: subprocess.Popen[str]) -> None:
    async def scenario(app: VmtopApp, pilot: Pilot[Any], proc: subprocess.Popen[str]) -> None:
        await app.wait_for_snapshot(lambda s: len(s.rows) > 3)
        proc.kill()
        await app.wait_until(lambda: app.lost_reason is not None, timeout=10)
        assert app.banner.display
        assert str(proc.pid) in str(app.banner.render())
        await app.wait_until(lambda: "exited" in (app.lost_reason or ""), timeout=10)
        assert "DETACHED" in app.status.text
        assert app.table.row_count > 3  # the last snapshot stays on screen

    drive(target, scenario)


def test_quit_detaches(target: subprocess.Popen[str]) -> None:
    async def scenario(app: VmtopApp, pilot: Pilot[Any], proc: Any) -> None:
        await app.wait_for_snapshot()
        await pilot.press("q")

    app = drive(target, scenario)
    assert app.source.closed
    app.reader.join(5)
    assert not app.reader.alive
    with AgentClient(target.pid) as client:  # the agent still serves: we only detached
        assert client.snapshot(limit=1).node.clients == 1


def test_the_first_snapshot_is_fetched_before_the_app_runs(target: subprocess.Popen[str]) -> None:
    # As run_tui does (vmtop attach): the table is filled as the screen first appears, and the
    # reader's own first fetch waits one interval (60 s here: it never comes in this test).
    async def main() -> tuple[int, int, int]:
        app = VmtopApp(AgentClient(target.pid).connect(), pid=target.pid, interval=60.0)
        app.fetch_first()
        async with app.run_test(size=(120, 40)):
            await app.wait_for_snapshot()
            return app.applied, app.reader.fetches, len(app.table.order)

    applied, fetches, rows = asyncio.run(main())
    assert (applied, fetches) == (1, 0)
    assert rows > 0


def test_profile_screen_shows_and_exports_a_report(
    target: subprocess.Popen[str], tmp_path: Path
) -> None:
    out = tmp_path / "live.svg"

    async def scenario(app: VmtopApp, pilot: Pilot[Any], proc: Any) -> None:
        app.report_seconds = 2.0
        await pilot.press("P")
        screen = app.screen
        assert isinstance(screen, ReportScreen)
        await app.wait_until(lambda: screen.done, timeout=30)  # woken by each refresh
        assert screen.error == ""
        assert type(screen.report).__name__ == "SampledProfile"
        assert "tui_target.py" in plain(screen.query_one("#report-body", Static).content)
        await export(app, pilot, out)
        assert screen.exported.startswith(str(out))
        await pilot.press("escape")
        assert app.screen is app.screen_stack[0]

    drive(target, scenario)
    assert out.read_text().lstrip().startswith(("<?xml", "<svg"))


def test_groups_view_shows_short_lived_tasks_by_coroutine(target: subprocess.Popen[str]) -> None:
    async def scenario(app: VmtopApp, pilot: Pilot[Any], proc: subprocess.Popen[str]) -> None:
        await pilot.press("g")
        await app.wait_until(lambda: "handle_request" in names(app))
        key = next(k for k in app.table.order if app.table.views[k].name == "handle_request")
        view = app.table.views[key]
        assert view.kind == "group" and view.cells[0].text == "grp"
        assert "/s started" in view.cells[-1].text and "life p50" in view.cells[-1].text
        assert "coroutine groups" in app.query_one("#status", StatusLine).text
        await pilot.press("g")  # back to processes: the spawner is a row again
        await app.wait_until(lambda: "spawner" in names(app))

    drive(target, scenario)
