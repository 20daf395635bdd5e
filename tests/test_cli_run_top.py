"""``vmtop run``, ``vmtop top`` and ``vmtop ps`` as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.agent_helpers import TARGETS, Target, vmtop_cmd

pytestmark = pytest.mark.internals  # runs under every supported Python in CI


@pytest.mark.parametrize("code", [0, 3, 42])
def test_run_preserves_exit_code_argv_and_stdin(code: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vmtop", "run", str(TARGETS / "exit_code.py"), str(code), "--flag"],
        input="hello from stdin\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == code
    out = json.loads(proc.stdout)
    assert out["argv"][1:] == [str(code), "--flag"]
    assert out["argv"][0].endswith("exit_code.py")
    assert out["stdin"] == "hello from stdin"
    assert out["main"] == "__main__"


def test_run_reports_the_programs_exception_like_python() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vmtop", "run", str(TARGETS / "exit_code.py"), "raise"],
        input="\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "RuntimeError: boom from the target" in proc.stderr
    assert "vmtop/cli" not in proc.stderr  # the traceback is the program's, not ours


def test_run_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vmtop", "run", "-q", "-m", "pkg_target", "a", "b"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=TARGETS,
    )
    assert proc.returncode == 5, proc.stderr
    out = json.loads(proc.stdout)
    assert out["argv"][1:] == ["a", "b"] and out["main"] == "__main__"


def test_run_missing_script_is_one_line_exit_2() -> None:
    proc = vmtop_cmd("run", "/nonexistent/app.py")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "vmtop run: error: no such script: /nonexistent/app.py"


@pytest.fixture(scope="module")
def target():
    with Target("agent_target.py") as t:
        t.read_until("busy_thread_cpu")  # its busy thread is done competing for the GIL
        yield t


def test_top_once_text_shows_header_and_hot_task(target: Target) -> None:
    proc = vmtop_cmd("top", str(target.pid), "--once", "-i", "0.3", "-n", "5")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"vmtop — pid {target.pid}")
    header = next(i for i, line in enumerate(lines) if line.startswith("ID "))
    first = lines[header + 2].split()
    assert first[1] == "hot" and first[2] == "task"


def test_top_json_count_and_sort(target: Target) -> None:
    proc = vmtop_cmd(
        "top", str(target.pid), "--count", "8", "-i", "0.5", "--json", "--sort", "mailbox"
    )
    assert proc.returncode == 0, proc.stderr
    snaps = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(snaps) == 8
    assert all(s["schema"] == 1 and s["sort"] == "mailbox" for s in snaps)
    # The consumer is known once the sampled dequeue hook has seen it take an item (one get
    # in 16; it takes one every 20 ms or more): from then on it leads with its backlog.
    firsts = [(s["rows"][0]["name"], s["rows"][0]["mailbox"]) for s in snaps]
    assert ("backlog-consumer", 500) in firsts, firsts
    assert firsts[-1] == ("backlog-consumer", 500), firsts


def test_top_accumulate_and_filter(target: Target) -> None:
    proc = vmtop_cmd("top", str(target.pid), "--once", "-i", "0.1", "--json", "-a", "-f", "sub-")
    snap = json.loads(proc.stdout)
    assert snap["accumulate"] is True
    names = {r["name"] for r in snap["rows"]}
    assert {"sub-0", "sub-1", "sub-2"} <= names
    assert all("sub-" in n for n in names)


@pytest.mark.parametrize(
    "args, message",
    [
        (["top", "abc"], "pid must be a number"),
        (["top", "-5"], "pid must be"),
        (["top", "999999999", "--once"], "no process with pid 999999999"),
        (["top", "1", "--once", "-i", "0"], "interval must be between"),
        (["top", "1", "--once", "--sort", "colour"], "invalid choice"),
        (["top", "1", "--once", "--kinds", "actors"], "--kinds takes"),
        (["top", "1", "--once", "-n", "zero"], "expected a whole number"),
    ],
)
def test_top_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    proc = vmtop_cmd(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_top_without_agent_says_how_to_start_one() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc = vmtop_cmd("top", str(sleeper.pid), "--once", "--no-inject")
        if "unrecognized arguments" in proc.stderr:  # before injection support exists
            proc = vmtop_cmd("top", str(sleeper.pid), "--once")
        assert proc.returncode == 2
        assert f"no vmtop agent in pid {sleeper.pid}" in proc.stderr
        assert sleeper.poll() is None  # the target is untouched
    finally:
        sleeper.kill()
        sleeper.wait()


def test_ps_lists_the_target_with_its_agent(target: Target) -> None:
    proc = vmtop_cmd("ps", "--json")
    assert proc.returncode == 0, proc.stderr
    procs = {p["pid"]: p for p in json.loads(proc.stdout)}
    me = procs[target.pid]
    assert me["agent"] == "listening"
    assert me["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
