"""Agents in child processes under ``vmtop run``, and one view of a process and its workers
(``vmtop top --subprocesses``, ``vmtop ps``): real programs, real uvicorn workers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from tests.agent_helpers import TARGETS, vmtop_cmd
from tests.fleet_helpers import Uvicorn, uvicorn_fixture  # noqa: F401 (the fixture)
from vmtop.client import wait_exit
from vmtop.fleet.multi import Fleet


def run_children(*flags: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "vmtop", "run", "-q", *flags, str(TARGETS / "children_target.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


@pytest.mark.internals  # at-fork hooks, multiprocessing's start methods: every Python
def test_every_kind_of_child_gets_its_own_agent() -> None:
    out = run_children()
    # Each answered on its own pid's socket; the parent still serves its own after the fork.
    for way in ("fork", "mp_spawn", "mp_forkserver", "mp_fork", "subprocess"):
        assert out[way] == "listening", (way, out)
    assert out["parent_after_fork"] == "listening"
    # multiprocessing children end in os._exit (fork, forkserver) or sys.exit (spawn): their
    # agents remove their sockets either way.
    for method in ("spawn", "forkserver", "fork"):
        assert out[f"mp_{method}_socket_left"] is False, (method, out)


@pytest.mark.internals
def test_no_subprocesses_flag_keeps_children_bare() -> None:
    out = run_children("--no-subprocesses")
    for way in ("fork", "mp_spawn", "mp_forkserver", "mp_fork", "subprocess"):
        # "-", or "stale" when a process killed earlier with that pid left its socket file
        assert out[way] != "listening", (way, out)


@pytest.mark.slow
def test_top_subprocesses_json_has_both_workers_tasks(uvicorn: Uvicorn) -> None:
    proc = vmtop_cmd(
        "top", str(uvicorn.pid), "--subprocesses", "--once", "--json", "-i", "0.3",
        "--kinds", "task", "-n", "50",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    fleet = json.loads(proc.stdout)
    assert fleet["root"] == uvicorn.pid
    pids = {p["pid"] for p in fleet["processes"]}
    assert {uvicorn.pid, *uvicorn.workers} <= pids
    assert all(p["ppid"] == uvicorn.pid for p in fleet["processes"] if p["pid"] != uvicorn.pid)
    task_pids = {row["pid"] for row in fleet["rows"] if row["kind"] == "task"}
    assert set(uvicorn.workers) <= task_pids  # each worker's server tasks, in one snapshot


@pytest.mark.slow
def test_top_subprocesses_text_has_a_process_table_and_pid_column(uvicorn: Uvicorn) -> None:
    proc = vmtop_cmd("top", str(uvicorn.pid), "--subprocesses", "--once", "-i", "0.3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"vmtop — pid {uvicorn.pid} and ")
    for worker in uvicorn.workers:
        assert any(line.startswith(f"└ {worker} ") for line in lines), proc.stdout
    heading = next(line for line in lines if line.startswith("PID     ID "))
    rows = lines[lines.index(heading) + 2 :]
    assert {int(r.split()[0]) for r in rows} >= set(uvicorn.workers)


@pytest.mark.slow
def test_ps_shows_the_workers_under_their_parent(uvicorn: Uvicorn) -> None:
    proc = vmtop_cmd("ps", "--json")
    assert proc.returncode == 0, proc.stderr
    procs = {p["pid"]: p for p in json.loads(proc.stdout)}
    for worker in uvicorn.workers:
        assert procs[worker]["ppid"] == uvicorn.pid
        assert procs[worker]["depth"] == procs[uvicorn.pid]["depth"] + 1
        assert procs[worker]["agent"] == "listening"
    text = vmtop_cmd("ps").stdout
    assert re.search(rf"^\s*{uvicorn.workers[0]}\s+{uvicorn.pid} .*└─ ", text, re.M), text


@pytest.mark.slow
def test_a_worker_that_dies_is_a_note_not_an_error() -> None:
    server = Uvicorn(2)
    try:
        with Fleet(server.pid) as fleet:
            first = fleet.snapshot(kinds=("task",))
            assert set(server.workers) <= {s.node.pid for s in first.processes}
            victim = server.workers[0]
            os.kill(victim, signal.SIGKILL)
            assert wait_exit(victim, 10)
            second = fleet.snapshot(kinds=("task",))
        assert f"pid {victim} exited during the refresh" in second.notes
        assert victim not in {s.node.pid for s in second.processes}
        assert server.workers[1] in {pid for pid, _ in second.rows}
    finally:
        server.stop()
