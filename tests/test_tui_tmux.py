"""End to end: the installed ``vmtop attach PID`` in a real terminal (tmux), against a real
target; keys go in with ``send-keys`` and the screen comes back with ``capture-pane``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vmtop.client import pid_exists
from vmtop.paths import socket_path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "tests" / "targets" / "tui_target.py"
VMTOP = shutil.which("vmtop")

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(
        VMTOP is None, reason="the vmtop command is not installed (pip install -e .)"
    ),
]


class Tmux:
    """One detached tmux session on a private server socket."""

    def __init__(self, command: str, width: int = 160, height: int = 48) -> None:
        self.server = f"vmtop-test-{uuid.uuid4().hex[:8]}"
        self.tmux(
            "new-session", "-d", "-x", str(width), "-y", str(height), "-s", "t",
            f"{command}; echo EXIT=$?; sleep 30",
        )  # fmt: skip

    def tmux(self, *args: str) -> str:
        # COLUMNS/LINES (set under pytest) would override the pane's real size in the app.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        out = subprocess.run(
            ["tmux", "-L", self.server, "-f", os.devnull, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def wait_for(self, condition: Callable[[str], bool], timeout: float = 20.0) -> str:
        """The screen, once ``condition(screen)`` holds. A terminal has no event to await:
        the screen is read every 0.1 s until the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if condition(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never matched; last screen:\n{text}")
            time.sleep(0.1)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True)


def table(screen: str) -> list[list[str]]:
    """The table rows on screen (lines after the ID/NAME header), split on blanks."""
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["ID", "NAME"])
    rows = []
    for line in lines[start + 1 :]:
        parts = line.split()
        if len(parts) < 3 or not parts[0][0].isalnum():
            break
        rows.append(parts)
    return rows


@pytest.fixture
def target() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmtop", "run", "--quiet", str(TARGET), "60"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert socket_path(proc.pid).exists()
        yield proc
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_attach_in_tmux_sort_filter_quit(target: subprocess.Popen[str]) -> None:
    term = Tmux(f"{VMTOP} attach {target.pid} --interval 0.5")
    try:
        screen = term.wait_for(lambda s: "ID" in s and "hot" in s and "inbox" in s)
        assert f"pid {target.pid}" in screen
        term.wait_for(lambda s: table(s)[0][1] == "hot")  # by reductions

        term.send("m")  # sort by mailbox
        screen = term.wait_for(lambda s: "MBOX▼" in s and table(s)[0][1] == "inbox")
        assert "sort mailbox" in screen

        term.send("/", "alpha", "Enter")  # filter
        screen = term.wait_for(lambda s: "filter 'alpha'" in s and len(table(s)) == 3)
        assert sorted(row[1] for row in table(screen)) == ["alpha-1", "alpha-2", "alpha-3"]

        term.send("q")  # quit: detach, exit 0
        screen = term.wait_for(lambda s: "EXIT=" in s)
        assert "EXIT=0" in screen
        assert "Traceback" not in screen
    finally:
        term.kill()


def test_demo_in_tmux_stops_the_demo_on_quit() -> None:
    term = Tmux(f"{VMTOP} demo --idle 5 --interval 0.5")
    try:
        screen = term.wait_for(lambda s: "cruncher" in s and "slow-consumer" in s, timeout=30)
        first = screen.splitlines()[0].split()
        demo_pid = int(first[first.index("pid") + 1])
        assert pid_exists(demo_pid)
        term.send("q")
        screen = term.wait_for(lambda s: "EXIT=" in s)
        assert "EXIT=0" in screen and "Traceback" not in screen
        assert _reaped_soon(demo_pid), f"the demo (pid {demo_pid}) outlived vmtop demo"
    finally:
        term.kill()


def _reaped_soon(pid: int, timeout: float = 5.0) -> bool:
    """vmtop demo waits for the demo before it exits; allow the kernel a moment to reap."""
    deadline = time.monotonic() + timeout
    while pid_exists(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
