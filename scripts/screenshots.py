"""Regenerate ``screenshots/`` (SVG, and PNG when chromium or rsvg-convert is there) of every
TUI screen against the live demo, and the recording the snapshot tests replay.

    python scripts/screenshots.py                   # screenshots/*.svg and *.png
    python scripts/screenshots.py --only main,help  # some of them
    python scripts/screenshots.py --record tests/data/tui_snapshots.json

Each shot starts the demo (``python -m vmtop.demo --agent``), attaches the real TUI to it
with Textual's headless driver, drives it with keys and waits for the snapshot it needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual.pilot import Pilot  # noqa: E402

from vmtop.client import AgentClient  # noqa: E402
from vmtop.paths import socket_path  # noqa: E402
from vmtop.tui.app import VmtopApp  # noqa: E402

OUT = ROOT / "screenshots"
BIG = (160, 48)
SMALL = (80, 24)


class Demo:
    """The demo as a child process with its agent; stopped on exit."""

    def __init__(self, idle: int = 60, seed: int = 7) -> None:
        self.args = [sys.executable, "-m", "vmtop.demo", "--agent", "--idle", str(idle)]
        self.args += ["--seed", str(seed)]

    def __enter__(self) -> Demo:
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        path = socket_path(self.proc.pid)
        deadline = time.monotonic() + 15
        while not path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the demo did not start (exit code {self.proc.poll()})")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def __exit__(self, *exc: object) -> None:
        self.stop()


Steps = Callable[[VmtopApp, Pilot[Any], Demo], Awaitable[None]]


async def settle(app: VmtopApp, pilot: Pilot[Any], snapshots: int = 4) -> None:
    """Wait for ``snapshots`` more snapshots to be drawn, so sparklines have a history."""
    target = app.applied + snapshots
    await app.wait_until(lambda: app.applied >= target, timeout=15 * snapshots)
    await pilot.pause()


async def main_screen(app: VmtopApp, pilot: Pilot[Any], demo: Demo) -> None:
    await settle(app, pilot, 6)


async def sorted_by_mailbox(app: VmtopApp, pilot: Pilot[Any], demo: Demo) -> None:
    await settle(app, pilot, 4)
    await pilot.press("m")
    await app.wait_for_snapshot(lambda s: s.sort == "mailbox")
    await settle(app, pilot, 2)


async def filtered(app: VmtopApp, pilot: Pilot[Any], demo: Demo) -> None:
    await settle(app, pilot, 3)
    await pilot.press("slash", *"worker")
    await app.wait_for_snapshot(lambda s: app.state.filter == "worker" and len(s.rows) < 10)
    await pilot.pause()


async def detail(app: VmtopApp, pilot: Pilot[Any], demo: Demo) -> None:
    await settle(app, pilot, 4)
    await _select(app, pilot, "slow-consumer")
    await pilot.press("enter")
    screen = app.screen
    await app.wait_until(lambda: getattr(screen, "fetches", 0) >= 1)
    await settle(app, pilot, 1)


async def help_screen(app: VmtopApp, pilot: Pilot[Any], demo: Demo) -> None:
    await settle(app, pilot, 2)
    await pilot.press("question_mark")
    await pilot.pause()


async def cancel_confirm(app: VmtopApp, pilot: Pilot[Any], demo: Demo) -> None:
    await settle(app, pilot, 3)
    await _select(app, pilot, "blocker")
    await pilot.press("k")
    await pilot.pause()


async def target_lost(app: VmtopApp, pilot: Pilot[Any], demo: Demo) -> None:
    await settle(app, pilot, 4)
    demo.stop()
    await app.wait_until(lambda: app.lost_reason is not None and "exited" in app.lost_reason)
    await pilot.pause()


async def _report(app: VmtopApp, pilot: Pilot[Any], key: str) -> Any:
    from vmtop.tui.widgets.report import ReportScreen

    await settle(app, pilot, 2)
    app.report_seconds = 3.0
    await pilot.press(key)
    screen = app.screen
    assert isinstance(screen, ReportScreen)
    await app.wait_until(lambda: screen.done, timeout=60)
    if screen.error:
        raise SystemExit(f"{key}: {screen.error}")
    await pilot.pause()
    return screen


async def profile(app: VmtopApp, pilot: Pilot[Any], demo: Demo) -> None:
    await _report(app, pilot, "P")


async def allocations(app: VmtopApp, pilot: Pilot[Any], demo: Demo) -> None:
    await _report(app, pilot, "A")


async def gc_report(app: VmtopApp, pilot: Pilot[Any], demo: Demo) -> None:
    await _report(app, pilot, "G")


async def export_prompt(app: VmtopApp, pilot: Pilot[Any], demo: Demo) -> None:
    await _report(app, pilot, "P")
    await pilot.press("e")
    await pilot.pause()


async def _select(app: VmtopApp, pilot: Pilot[Any], name: str) -> None:
    """Put the cursor on the row named ``name``."""
    await app.wait_until(lambda: any(v.name == name for v in app.table.views.values()))
    key = next(k for k, v in app.table.views.items() if v.name == name)
    app.table.move_cursor(row=app.table.get_row_index(key), animate=False)
    await pilot.pause()


async def groups(app: VmtopApp, pilot: Pilot[Any], demo: Demo) -> None:
    await pilot.press("g")
    await app.wait_until(
        lambda: "Gateway.handle_request" in [v.name for v in app.table.views.values()]
    )
    await settle(app, pilot, 2)


SHOTS: dict[str, tuple[Steps, tuple[int, int]]] = {
    "main-160x48": (main_screen, BIG),
    "main-80x24": (main_screen, SMALL),
    "mailbox-160x48": (sorted_by_mailbox, BIG),
    "filter-160x48": (filtered, BIG),
    "groups-160x48": (groups, BIG),
    "detail-160x48": (detail, BIG),
    "detail-80x24": (detail, SMALL),
    "help-80x24": (help_screen, SMALL),
    "cancel-160x48": (cancel_confirm, BIG),
    "lost-160x48": (target_lost, BIG),
    "profile-160x48": (profile, BIG),
    "allocations-160x48": (allocations, BIG),
    "gc-80x24": (gc_report, SMALL),
    "export-160x48": (export_prompt, BIG),
}


async def shoot(name: str, steps: Steps, size: tuple[int, int]) -> Path:
    with Demo() as demo:
        time.sleep(1.0)  # let the actors warm up: mailboxes fill, the hoarder grows
        client = AgentClient(demo.pid).connect()
        app = VmtopApp(client, pid=demo.pid, interval=0.5)
        async with app.run_test(size=size) as pilot:
            await steps(app, pilot, demo)
            svg = app.export_screenshot(title=f"vmtop — {name}")
    path = OUT / f"{name}.svg"
    path.write_text(svg)
    return path


def to_png(svg: Path, size: tuple[int, int]) -> Path | None:
    """PNG of an SVG: chromium renders Textual's SVGs faithfully; rsvg-convert is a fallback
    (it lays out the web font's spaces wrongly)."""
    png = svg.with_suffix(".png")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        view = svg.read_text().split('viewBox="', 1)[1].split('"', 1)[0].split()
        w, h = int(float(view[2])) + 1, int(float(view[3])) + 1
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--screenshot={png}",
                f"--window-size={w},{h}",
                svg.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return png
    rsvg = shutil.which("rsvg-convert")
    if rsvg:
        subprocess.run([rsvg, str(svg), "-o", str(png)], check=True, timeout=60)
        return png
    return None


# -- the recording the snapshot tests replay --------------------------------------------------
def _anonymise(text: str) -> str:
    import sysconfig

    text = text.replace(str(ROOT) + "/", "")
    stdlib = sysconfig.get_paths()["stdlib"]
    return text.replace(stdlib + "/", "/usr/lib/python3/")


def record(path: Path, count: int = 8) -> None:
    with Demo(idle=40) as demo:
        time.sleep(1.5)
        client = AgentClient(demo.pid).connect()
        snapshots = []
        for _ in range(count):
            time.sleep(0.5)
            snapshots.append(client.snapshot(limit=1000))
        last = snapshots[-1]
        details = {}
        wanted = {"slow-consumer", "router", "blocker", "disk-writer"}
        for row in last.rows:
            if row.name in wanted or row.kind == "queue":
                details[row.key] = client.detail(row.key)
        client.close()
    data = {"snapshots": [s.to_dict() for s in snapshots], "details": details}
    text = json.dumps(data, separators=(",", ":"), default=str)
    path.write_text(_anonymise(text) + "\n")
    print(f"{path}: {count} snapshots, {len(last.rows)} rows, {len(details)} details")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated shot names")
    parser.add_argument("--no-png", action="store_true")
    parser.add_argument("--record", type=Path, metavar="JSON", help="record the test fixture")
    args = parser.parse_args()
    if args.record:
        record(args.record)
        return 0
    names = [n for n in args.only.split(",") if n] or list(SHOTS)
    unknown = [n for n in names if n not in SHOTS]
    if unknown:
        parser.error(f"unknown shots {unknown}; known: {', '.join(SHOTS)}")
    OUT.mkdir(exist_ok=True)
    for name in names:
        steps, size = SHOTS[name]
        svg = asyncio.run(shoot(name, steps, size))
        png = None if args.no_png else to_png(svg, size)
        print(f"{svg.relative_to(ROOT)}" + (f" + {png.name}" if png else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
