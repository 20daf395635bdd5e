"""Pykka threading actors through the agent: one row per actor, against a real target."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from tests.agent_helpers import Target, vmtop_cmd
from vmtop.client import AgentClient
from vmtop.records import Snapshot
from vmtop.tui.widgets.detail import render_detail

pytestmark = pytest.mark.internals  # reads thread frames and a frame's locals


@pytest.fixture(scope="module")
def target():
    with Target("pykka_target.py") as t:
        yield t


def actor_rows(snap: Snapshot) -> dict[str, object]:
    return {r.name.split()[0]: r for r in snap.rows if r.runtime == "pykka"}


def test_one_row_per_actor_named_by_class_and_urn(target: Target) -> None:
    urns = target.ready["urns"]
    with AgentClient(target.pid) as client:
        snap = client.snapshot(limit=50, kinds=("thread",))
    actors = actor_rows(snap)
    assert set(actors) == {"SlowActor", "BusyActor", "IdleActor", "StoppingActor"}
    for cls, key in (("SlowActor", "slow"), ("BusyActor", "busy"), ("IdleActor", "idle")):
        row = actors[cls]
        assert row.name == f"{cls} {urns[key]}"  # type: ignore[attr-defined]
        assert row.kind == "thread" and row.key.startswith("actor:")  # type: ignore[attr-defined]
    # The actor's row replaces its thread's row ("SlowActor-0" is the thread's name).
    assert not [r for r in snap.rows if r.key.startswith("thread:") and "Actor-" in r.name]


def test_slow_actor_shows_its_inbox_and_the_message_it_handles(target: Target) -> None:
    target.send("fill 300")  # one message it handles (and blocks in), 300 that wait
    target.read_until("filled")
    with AgentClient(target.pid) as client:
        snap = client.snapshot(sort="mailbox", limit=5)
        first = snap.rows[0]
        detail = client.detail(first.key)
    assert first.name.startswith("SlowActor ") and first.mailbox == 300
    assert first.state == "handling"
    assert first.current is not None and first.current.function == "SlowActor.wait_for_release"
    assert first.waiting_on == "Event.wait"
    assert detail["handling"] == "{'job': 0}"
    (inbox,) = detail["mailbox"]
    assert inbox["length"] == 300
    assert inbox["preview"][:3] == ["{'job': 1}", "{'job': 2}", "{'job': 3}"]
    # The TUI's detail page shows both: the message handled and the next ones.
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(render_detail(detail, None))
    page = console.export_text()
    assert "handling  {'job': 0}" in page and "{'job': 1}" in page


def test_busy_actor_counts_its_messages_and_idle_one_none(target: Target) -> None:
    with AgentClient(target.pid) as client:
        target.send("feed 3000")
        handled = target.read_until("handled", timeout=60)["handled"]
        snap = client.snapshot(limit=50, accumulate=True, kinds=("thread",))
    actors = actor_rows(snap)
    busy, idle = actors["BusyActor"], actors["IdleActor"]
    # Taken from its inbox since the attach: the messages it handled, plus the two "count"
    # questions the target asked it around them.
    assert handled == 3000
    assert handled <= busy.reductions_total <= handled + 2  # type: ignore[attr-defined,operator]
    assert busy.state == "waiting" and busy.mailbox == 0  # type: ignore[attr-defined]
    assert busy.time_total > 0  # type: ignore[attr-defined,operator]
    assert idle.reductions_total == 0 and idle.reductions == 0  # type: ignore[attr-defined]
    assert idle.state == "waiting" and idle.mailbox == 0  # type: ignore[attr-defined]
    assert idle.current is None and idle.waiting_on == "inbox"  # type: ignore[attr-defined]


def test_vmtop_top_lists_actors(target: Target) -> None:
    out = vmtop_cmd("top", str(target.pid), "--once", "-i", "0.2", "--kinds", "thread")
    assert out.returncode == 0, out.stderr
    assert "IdleActor urn:uuid:" in out.stdout and "SlowActor urn:uuid:" in out.stdout


def test_stopped_actor(target: Target) -> None:
    target.send("stop-one")
    target.read_until("stop_sent")
    with AgentClient(target.pid) as client:
        # The actor handles the stop message on its own thread: wait until it has.
        deadline = time.monotonic() + 10
        row = None
        while row is None or row.state != "stopped":
            assert time.monotonic() < deadline, f"not stopped: {row}"
            time.sleep(0.02)
            snap = client.snapshot(limit=50, kinds=("thread",), filter="stoppingactor")
            (row,) = snap.rows
    assert row.current is not None and row.current.function == "StoppingActor.on_stop"
