"""Peek mode: snapshots of a real process from py-spy and psutil, with nothing loaded in it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmtop.attach.ensure import existing_agent
from vmtop.client import ClientError
from vmtop.peek import PEEK_NOTE, PeekSource
from vmtop.records import Snapshot
from vmtop.views.top_text import render

TARGET = """
import threading, time

def spin():
    s = 0
    while True:
        for i in range(10000):
            s += i

def waiter(event):
    event.wait()

threading.Thread(target=waiter, args=(threading.Event(),), name="lazy-waiter", daemon=True).start()
print("ready", flush=True)
spin()
"""


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[str]]:
    script = Path(tmp_path_factory.mktemp("peek")) / "target.py"
    script.write_text(textwrap.dedent(TARGET))
    proc = subprocess.Popen([sys.executable, "-u", str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait()


def test_snapshot_has_thread_rows_with_py_spy_stacks_and_psutil_figures(
    target: subprocess.Popen[str],
) -> None:
    with PeekSource(target.pid) as peek:
        snap = peek.snapshot(sort="time", limit=10)
    rows = {r.name: r for r in snap.rows}
    assert set(rows) == {"MainThread", "lazy-waiter"}
    main = rows["MainThread"]
    assert main.kind == "thread" and main.key == f"thread:{target.pid}"
    assert main.current is not None and main.current.function == "spin"
    assert main.time_total is not None and main.time_total > 0
    assert main.state in ("running", "sleeping")
    assert snap.rows[0].name == "MainThread"  # the busy thread sorts first (CPU time)
    waiter = rows["lazy-waiter"]
    assert waiter.waiting_on == "idle" and waiter.current is not None
    # What peek cannot measure is None ("–"), never 0.
    for row in snap.rows:
        assert row.reductions is None and row.mailbox is None and row.memory is None
    assert snap.node.pid == target.pid and snap.node.threads == 2
    assert snap.node.rss is not None and snap.node.rss > 1_000_000
    assert snap.node.cpu_percent is not None
    assert PEEK_NOTE in snap.notes
    assert any(n.startswith("open file descriptors: ") for n in snap.notes)


def test_same_views_read_it(target: subprocess.Popen[str]) -> None:
    with PeekSource(target.pid) as peek:
        snap = peek.snapshot()
    assert Snapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap
    text = render(snap)
    main_line = next(line for line in text.splitlines() if line.startswith(str(target.pid)))
    assert "MainThread" in main_line and "spin" in main_line and "–" in main_line


def test_filter_kinds_limit_and_detail(target: subprocess.Popen[str]) -> None:
    with PeekSource(target.pid) as peek:
        only = peek.snapshot(filter="LAZY")
        assert [r.name for r in only.rows] == ["lazy-waiter"]
        assert peek.snapshot(kinds=("task", "queue")).rows == ()
        top1 = peek.snapshot(limit=1)
        assert len(top1.rows) == 1 and top1.total_rows == 2
        detail = peek.detail(f"thread:{target.pid}")
        assert detail["stack"][-1]["function"] == "spin"  # outermost first
        with pytest.raises(ClientError, match="cannot change the target"):
            peek.cancel(f"thread:{target.pid}")


def test_cli_top_peek_json_loads_nothing(target: subprocess.Popen[str]) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vmtop",
            "top",
            str(target.pid),
            "--peek",
            "--once",
            "--json",
            "-i",
            "0.1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(proc.stdout)
    assert {r["name"] for r in snap["rows"]} == {"MainThread", "lazy-waiter"}
    assert existing_agent(target.pid) is None
    with open(f"/proc/{target.pid}/maps") as f:
        assert "vmtop" not in f.read()


def test_errors_are_one_line() -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    gone = subprocess.Popen(["true"])
    gone.wait()
    try:
        with pytest.raises(ClientError, match="not look like a Python process"):
            PeekSource(sleeper.pid).connect()
        with pytest.raises(ClientError, match="no process"):
            PeekSource(gone.pid).connect()
        proc = subprocess.run(
            [sys.executable, "-m", "vmtop", "top", str(sleeper.pid), "--peek", "--once"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
