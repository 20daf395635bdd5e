"""``vmtop attach PID --subprocesses``: the TUI on a uvicorn parent and its 2 workers, through
the fleet source (Textual pilot, real processes; waits are on the app's snapshots)."""

from __future__ import annotations

import asyncio

import pytest

from tests.fleet_helpers import Uvicorn, uvicorn_fixture  # noqa: F401 (the fixture)
from vmtop.fleet.source import FleetSource
from vmtop.tui.app import VmtopApp
from vmtop.tui.widgets.detail import DetailScreen

pytest.importorskip("uvicorn")
pytestmark = pytest.mark.slow


def test_tui_shows_every_workers_rows_and_drills_into_one(uvicorn: Uvicorn) -> None:
    def shown_pids(app: VmtopApp) -> set[int]:
        """The pids in the ID column as drawn ("<pid>/<id>", "T" before a thread's)."""
        cells = [str(app.table.get_row_at(i)[0]).strip() for i in range(app.table.row_count)]
        return {int(c.lstrip("T").split("/")[0]) for c in cells}

    async def main() -> None:
        source = FleetSource(uvicorn.pid).connect()
        app = VmtopApp(source, pid=uvicorn.pid, interval=0.5)
        async with app.run_test(size=(140, 40)) as pilot:
            await app.wait_for_snapshot(
                lambda s: set(uvicorn.workers) <= {int(r.key.split("/")[0]) for r in s.rows}
            )
            await pilot.pause()
            assert set(uvicorn.workers) <= shown_pids(app)
            first = app.table.views[app.table.order[0]]
            await pilot.press("enter")  # the detail comes from that row's own agent
            screen = app.screen
            assert isinstance(screen, DetailScreen)
            await app.wait_until(lambda: screen.fetches >= 1 or bool(screen.error))
            assert screen.error == ""
            assert screen.data is not None and screen.data["name"] == first.name

    asyncio.run(main())
