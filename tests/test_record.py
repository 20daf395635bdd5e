"""``vmtop record``: py-spy samples of a real process, written by vmtop's own writers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from profilers.pyspy_reader import parse_frame, read_raw
from profilers.stacks import Frame, StackModel
from tests.agent_helpers import communicate_or_dump

SCHEMA = Path(__file__).parent / "data" / "speedscope-file-format-schema.json"

TARGET = """
import threading, time

def hot_function():
    s = 0
    for i in range(20000):
        s += i * i
    return s

def idler():
    while True:
        time.sleep(1)

threading.Thread(target=idler, name="idler", daemon=True).start()
print("ready", flush=True)
while True:
    hot_function()
"""


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[str]]:
    script = Path(tmp_path_factory.mktemp("record")) / "target.py"
    script.write_text(textwrap.dedent(TARGET))
    proc = subprocess.Popen([sys.executable, "-u", str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait()


def record(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmtop", "record", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# -- the reader -------------------------------------------------------------------------------


def test_reader_maps_py_spy_roots_and_frames() -> None:
    text = (
        "thread (4242): MainThread;<module> (/app/main.py:1);hot (/app/main.py:10) 7\n"
        'process 17:"python app.py";thread (0x7F12): worker;run (threading.py:971) 2\n'
        "thread (99);do_epoll_wait (libc.so.6) 1\n"
        " 3\n"  # a sample with no Python frame: dropped, like py-spy's own flamegraphs
        "solo (<frozen importlib._bootstrap>:1165) 1\n"
    )
    model = read_raw(text)
    stacks = {tuple(f.label for f in frames): w for frames, w in model.items()}
    assert stacks == {
        ("thread MainThread", "<module> (/app/main.py:1)", "hot (/app/main.py:10)"): 7,
        ("process 17 python app.py", "thread worker", "run (threading.py:971)"): 2,
        ("thread 99", "do_epoll_wait (libc.so.6)"): 1,
        ("solo (<frozen importlib._bootstrap>:1165)",): 1,
    }
    assert parse_frame("hot (/app/main.py:10)") == Frame("hot", "/app/main.py", 10)
    with pytest.raises(ValueError, match="line 2"):
        read_raw("a (f.py:1) 1\nb (f.py:2) many\n")


# -- recording a live process ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".svg", ".speedscope.json", ".folded"])
def test_record_pid_writes_a_file_holding_the_hot_function(
    target: subprocess.Popen[str], tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"profile{suffix}"
    proc = record(str(target.pid), "-d", "1", "-r", "200", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "hottest: hot_function (target.py)" in proc.stderr
    text = out.read_text()
    if suffix == ".folded":
        model = StackModel.from_folded(text)
        own = {f.function: w for f, w in model.self_weights().items()}
        assert max(own, key=lambda k: own[k]) == "hot_function"
        frame = next(f for f in model.frames if f.function == "hot_function")
        assert frame.file.endswith("target.py") and frame.line == 4  # per function, full path
    elif suffix == ".speedscope.json":
        data = json.loads(text)
        jsonschema.validate(data, json.loads(SCHEMA.read_text()))
        names = [f["name"] for f in data["shared"]["frames"]]
        assert "hot_function" in names
    else:
        assert text.startswith("<?xml") or text.lstrip().startswith("<svg")
        assert "hot_function" in text
    assert target.poll() is None


def test_threads_and_idle_options_pass_through(
    target: subprocess.Popen[str], tmp_path: Path
) -> None:
    out = tmp_path / "threads.folded"
    proc = record(str(target.pid), "-d", "1", "--threads", "--idle", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    roots = {frames[0].function for frames, _ in StackModel.from_folded(out.read_text()).items()}
    assert {"thread MainThread", "thread idler"} <= roots  # idle thread sampled with --idle


def test_record_a_command(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        "import time\n"
        "def crunch():\n"
        "    t = time.monotonic()\n"
        "    while time.monotonic() - t < 1.5:\n"
        "        sum(range(1000))\n"
        "crunch()\n"
        "print('app finished')\n"
    )
    out = tmp_path / "app.folded"
    proc = record("-o", str(out), "--", sys.executable, str(script))
    assert proc.returncode == 0, proc.stderr
    assert "app finished" in proc.stdout
    assert "crunch" in out.read_text()


def test_ctrl_c_stops_early_and_still_writes(target: subprocess.Popen[str], tmp_path: Path) -> None:
    out = tmp_path / "interrupted.svg"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmtop", "record", str(target.pid), "-o", str(out)],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    assert "until Ctrl-C" in proc.stderr.readline()
    time.sleep(1.0)  # py-spy reports nothing while sampling: give it a second of samples
    proc.send_signal(signal.SIGINT)
    err = communicate_or_dump(proc, 30)[1]
    assert proc.returncode == 0, err
    assert "hot_function" in out.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["1", "-d", "1", "-o", "out.txt"], "unknown output format '.txt'"),
        (["-d", "1", "-o", "out.svg"], "give a PID to record"),
        (["999999", "-d", "1", "-o", "out.svg"], "no process with pid 999999"),
        (["1", "-d", "0", "-o", "out.svg"], "duration must be between 0 and 604800 s"),
        (["1", "-d", "1", "-o", "/no/such/dir/out.svg"], "no directory"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    proc = record(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_non_python_pid_is_refused() -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        proc = record(str(sleeper.pid), "-d", "1", "-o", "x.svg")
        assert proc.returncode == 2 and "is not a CPython process" in proc.stderr
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
