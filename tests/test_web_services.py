"""Real web services under vmtop: aiohttp, and Starlette on uvicorn with uvloop and with the
asyncio loop (``tests/targets/web_app.py``). One short task per request: what must cost the
service nothing it would notice, keep nothing alive, and show as groups, not rows.

Memory is compared with the same load unattached (a generous margin, not a timing). The load
comes from ``benchmarks/workloads/http_load.py`` in its own process; throughput is measured
with wrk in ``benchmarks/bench_web.py``, never here.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_helpers import Target
from vmtop.client import AgentClient
from vmtop.records import GroupRow, Snapshot

pytestmark = [pytest.mark.internals, pytest.mark.slow]

LOAD = Path(__file__).parent.parent / "benchmarks" / "workloads" / "http_load.py"
SERVERS = ["aiohttp", "uvicorn-uvloop", "uvicorn-asyncio"]
# The coroutine each server runs one task of per request.
REQUEST_GROUP = {
    "aiohttp": "RequestHandler._handle_request",
    "uvicorn-uvloop": "RequestResponseCycle.run_asgi",
    "uvicorn-asyncio": "RequestResponseCycle.run_asgi",
}


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[Target]:
    pytest.importorskip("aiohttp" if request.param == "aiohttp" else "uvicorn")
    with Target("web_app.py", request.param) as target:
        target.kind = request.param  # type: ignore[attr-defined]
        wait_listening(int(target.ready["port"]))
        yield target


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.05)


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def load(port: int, seconds: float, path: str = "/item/2") -> int:
    """Keep-alive load from another process for ``seconds``; the responses it got."""
    out = (
        subprocess.run(
            [sys.executable, str(LOAD), str(port), "--connections", "16"]
            + ["--duration", str(seconds), "--path", path],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
        .stdout.strip()
        .splitlines()
    )
    return int(json.loads(out[-1])["responses"])


def get(port: int, path: str, times: int) -> None:
    for _ in range(times):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            assert r.status == 200


def group(snap: Snapshot, name: str) -> GroupRow:
    found = [g for g in snap.groups if g.coro == name]
    assert found, f"no group {name!r} in {[g.coro for g in snap.groups]}"
    return found[0]


def test_memory_stays_bounded_while_a_client_is_attached_and_silent(server: Target) -> None:
    check_memory_bounded(server)


def test_memory_stays_bounded_with_the_python_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback (no compiler at install, or VMTOP_HOOKS=python) keeps nothing either."""
    pytest.importorskip("aiohttp")
    monkeypatch.setenv("VMTOP_HOOKS", "python")
    with Target("web_app.py", "aiohttp") as target:
        target.kind = "aiohttp"  # type: ignore[attr-defined]
        wait_listening(int(target.ready["port"]))
        check_memory_bounded(target)


def check_memory_bounded(server: Target) -> None:
    port = int(server.ready["port"])
    load(port, 2)  # warm-up: imports, caches, the allocator's arenas
    before = rss(server.pid)
    unattached = load(port, 4)
    growth_plain = rss(server.pid) - before
    with AgentClient(server.pid) as client:
        client.snapshot(limit=10)  # hooks and factory in; then a paused client: no snapshot
        before = rss(server.pid)
        attached = load(port, 4)
        growth_attached = rss(server.pid) - before
        snap = client.snapshot(limit=10, accumulate=True)
    assert unattached > 500 and attached > 500
    # Holding every finished request (the bug) grew ~1 KiB per request: megabytes here.
    assert growth_attached < growth_plain + 4 * 2**20, (growth_plain, growth_attached, attached)
    # Every request's task finished and was folded into its group; none is a row.
    assert snap.node.tasks_finished_total is not None
    assert snap.node.tasks_finished_total >= attached
    assert group(snap, REQUEST_GROUP[server.kind]).finished_total >= attached  # type: ignore[attr-defined]
    assert all(not row.name.startswith("Task-") or row.state != "done" for row in snap.rows)


def test_a_handler_with_known_awaits_shows_exact_steps_per_request(server: Target) -> None:
    port = int(server.ready["port"])
    name = REQUEST_GROUP[server.kind]  # type: ignore[attr-defined]
    with AgentClient(server.pid) as client:
        client.snapshot(limit=1)
        get(port, "/item/1", 20)
        base = group(client.snapshot(limit=1), name)
        get(port, "/item/4", 20)
        more = group(client.snapshot(limit=1), name)
    # Per interval: 20 requests each; /item/4 awaits asyncio.sleep(0) three more times. (Both
    # suspend: on 3.12+ aiohttp starts request tasks eagerly with asyncio.Task(...), whose
    # first step no hook sees; a request that suspends is counted from its second step.)
    assert (base.finished, more.finished) == (20, 20)
    assert base.reductions is not None and more.reductions is not None
    assert base.reductions % 20 == 0 and more.reductions % 20 == 0
    assert more.reductions // 20 - base.reductions // 20 == 3
    if server.kind == "aiohttp" and sys.version_info >= (3, 12):  # type: ignore[attr-defined]
        # aiohttp makes these tasks with asyncio.Task(..., eager_start=True), not through
        # the loop's factory: the agent meets them at their second step, with no birth time.
        assert base.lifetime_p50 is None and "first seen at a step" in base.notes[0]
    else:
        assert base.lifetime_p50 is not None and 0 < base.lifetime_p50 < 1.0


def test_detach_restores_the_loop_and_leaves_nothing(server: Target) -> None:
    port = int(server.ready["port"])
    with AgentClient(server.pid) as client:
        client.snapshot(limit=5)
        get(port, "/item/1", 5)
        snap = client.snapshot(limit=5)
        (loop,) = snap.node.loops
        assert loop.steps_counted
    closed = time.monotonic()
    # A new client after the detach starts from zero: nothing was kept from the last one.
    # The agent sees a client's close on its own thread; a client that connects before it
    # has still finds the hooks (and counts) in: reconnect until the agent says it attached
    # anew after our close (its attach time is younger than the close).
    deadline = closed + 20
    while True:
        time.sleep(0.2)
        with AgentClient(server.pid) as client:
            snap = client.snapshot(limit=5, accumulate=True)
        if snap.node.attached_for < time.monotonic() - closed or time.monotonic() > deadline:
            break
    assert snap.node.attached_for < time.monotonic() - closed
    assert snap.node.tasks_created_total == 0
    assert all((g.finished_total, g.started_total) == (0, 0) for g in snap.groups)


def test_top_group_coro_prints_the_request_groups(server: Target) -> None:
    """The installed command, end to end: ``vmtop top PID --group coro`` while requests run."""
    port = int(server.ready["port"])
    top = subprocess.Popen(
        ["vmtop", "top", str(server.pid), "--group", "coro", "--count", "2", "-i", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    done = threading.Event()

    def requests() -> None:
        while not done.is_set():
            get(port, "/item/1", 1)

    thread = threading.Thread(target=requests)
    thread.start()
    try:
        out, err = top.communicate(timeout=60)
    finally:
        done.set()
        thread.join()
    assert top.returncode == 0, err
    assert "tasks by coroutine" in out and REQUEST_GROUP[server.kind] in out  # type: ignore[attr-defined]
    assert "tasks created" in out and "ID       NAME" not in out  # groups only, no process rows
