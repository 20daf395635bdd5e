"""Sampled mode (pyinstrument): where the time goes, async attribution, the report, its files."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

import vmtop
from profilers.profile import Profile, profile
from profilers.profile_report import SampledProfile
from profilers.stacks import Frame, StackModel

pytestmark = pytest.mark.internals  # runs under every supported Python in CI

SCHEMA = Path(__file__).parent / "data" / "speedscope-file-format-schema.json"
PROFILERS_DIR = str(Path(__file__).resolve().parent.parent / "profilers")


def step(i: int) -> int:
    return i * i


def hot(n: int) -> None:
    for i in range(4 * n):
        step(i)


def cold(n: int) -> None:
    for i in range(n):
        step(i)


def workload(n: int = 15_000, rounds: int = 10) -> str:
    # hot does 4x the work of cold: ~80 % of the time. Busy CPU with calls (pyinstrument
    # samples on call events), long enough (~0.5 s profiled) to be robust on a noisy machine.
    for _ in range(rounds):
        hot(n)
        cold(n)
    return "done"


def share(model: StackModel, function: str) -> float:
    weights = model.total_weights()
    return sum(w for f, w in weights.items() if f.function == function) / model.total


def test_a_function_with_80_percent_of_the_work_gets_70_to_90_percent() -> None:
    report = profile(workload)
    assert isinstance(report, SampledProfile)
    assert report.return_value == "done"
    assert report.stacks.unit == "seconds"
    assert report.samples > 50
    assert 0.70 <= share(report.stacks, "hot") <= 0.90
    assert 0.10 <= share(report.stacks, "cold") <= 0.30
    # Every stack starts at the profiled function: no runner, profiler or thread frames.
    assert {frames[0].function for frames, _ in report.stacks.items()} == {"workload"}
    for frame in report.stacks.frames:
        assert "pyinstrument" not in frame.file
        assert not frame.file.startswith(PROFILERS_DIR)
    # Frames keep their location.
    hot_frame = next(f for f in report.stacks.frames if f.function == "hot")
    assert hot_frame == Frame("hot", __file__, hot.__code__.co_firstlineno)
    # The report: tree and table, heaviest first.
    text = report.render_text(width=120)
    assert "call tree" in text and "top functions by own time" in text
    table = text[text.index("top functions by own time") :].splitlines()
    assert {"hot", "step"} & set(table[2].split())  # own time: the loop or its callee


async def napper() -> str:
    await asyncio.sleep(0.3)
    for i in range(20_000):
        step(i)
    return "rested"


def test_awaited_time_is_attributed_to_the_coroutine() -> None:
    report = profile(napper)
    assert report.return_value == "rested"
    stacks = {tuple(f.function for f in frames): w for frames, w in report.stacks.items()}
    assert {s[0] for s in stacks} == {"napper"}  # not the event loop
    awaited = sum(w for s, w in stacks.items() if s[-1] == "<await>")
    assert ("napper", "sleep", "<await>") in stacks
    # The 0.3 s sleep is most of the wall time, and it is napper's.
    assert awaited > 0.5 * report.stacks.total
    assert share(report.stacks, "napper") == pytest.approx(1.0)


def test_a_function_returning_a_coroutine_and_a_running_loop() -> None:
    report = profile(lambda: napper())
    assert report.return_value == "rested"

    async def inside_a_loop() -> SampledProfile:
        return profile(napper)  # asyncio.run cannot nest: runs on a fresh thread

    inner = asyncio.run(inside_a_loop())
    assert inner.return_value == "rested"
    assert share(inner.stacks, "napper") == pytest.approx(1.0)


def test_context_manager_becomes_the_report(tmp_path: Path) -> None:
    p = profile()
    assert isinstance(p, Profile)
    with pytest.raises(RuntimeError, match="not run yet"):
        p.save(tmp_path / "x.svg")
    with p:
        workload(3000, 2)
    assert isinstance(p.report, SampledProfile)
    # The block's own frame (this test) is the root.
    roots = {frames[0].function for frames, _ in p.stacks.items()}
    assert roots == {"test_context_manager_becomes_the_report"}
    assert "hot" in {f.function for f in p.stacks.frames}
    assert p.duration == p.report.duration  # attributes pass through
    assert "with block at" in repr(p)
    assert p.save(tmp_path / "block.folded") == "folded"


def test_decorator_bare_and_with_options(capsys: pytest.CaptureFixture[str]) -> None:
    @vmtop.profile
    def traced(n: int) -> int:
        hot(n)
        return n

    @vmtop.profile(interval=0.0005)
    def traced2() -> str:
        cold(2000)
        return "ok"

    assert traced(2000) == 2000
    assert traced2() == "ok"
    first = traced.last_profile
    assert isinstance(first, SampledProfile)
    assert first.return_value == 2000
    assert traced2.last_profile.interval == 0.0005
    err = capsys.readouterr().err
    assert "vmtop profile (sampled)" in err and "traced" in err

    # A plain call with a function and no arguments runs it now (not a decorator).
    def answer() -> int:
        return 42

    assert profile(answer).return_value == 42


def test_tiny_frames_are_hidden_with_a_note() -> None:
    model = StackModel(unit="seconds")
    model.add([Frame("main", "m.py", 1), Frame("big", "m.py", 5)], 0.99)
    model.add([Frame("main", "m.py", 1), Frame("small", "m.py", 9)], 0.005)
    report = SampledProfile(model, duration=1.0, samples=100, interval=0.001, name="m")
    text = report.render_text(width=100)
    assert "big" in text
    assert "small" not in text.split("top functions")[0]
    assert "1 frames under 1% hidden" in text
    assert "small" in text.split("top functions")[1]  # the table still lists it


def test_files_from_a_sampled_profile(tmp_path: Path) -> None:
    report = profile(workload, 3000, 2)
    assert report.save(tmp_path / "p.speedscope.json") == "speedscope"
    data = json.loads((tmp_path / "p.speedscope.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    assert report.save(tmp_path / "p.folded") == "folded"
    back = StackModel.from_folded((tmp_path / "p.folded").read_text(), unit="seconds")
    assert back.total == pytest.approx(report.stacks.total, rel=1e-3)
    assert report.save(tmp_path / "p.svg") == "svg"
    assert ET.parse(tmp_path / "p.svg").getroot().tag.endswith("svg")
    with pytest.raises(ValueError, match="calls=True"):
        report.save(tmp_path / "p.pstats")
    with pytest.raises(ValueError):
        report.save(tmp_path / "p.txt")
    data = json.loads(report.to_json())
    assert data["kind"] == "sampled"
    assert data["top_functions"][0]["function"] in {"hot", "step"}
    assert sum(s["weight"] for s in data["stacks"]) == pytest.approx(data["total"])


def test_ipython_magics(tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    script = textwrap.dedent(
        f"""
        from IPython.testing.globalipapp import start_ipython
        ip = start_ipython()
        ip.run_line_magic("load_ext", "vmtop.ipython")
        ip.run_cell("def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)")
        r = ip.run_line_magic("vmtop", "--calls --limit 3 fib(15)")
        print("CALLS", r.find("fib")[0].calls, r.return_value)
        r = ip.run_cell_magic("vmtop", "-o {tmp_path}/cell.folded", "x = fib(18)")
        print("CELL", ip.user_ns["x"], sorted({{f.function for f in r.stacks.frames}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert out.returncode == 0, out.stderr
    assert "CALLS 1973 610" in out.stdout
    assert "CELL 2584" in out.stdout and "'fib'" in out.stdout
    assert (tmp_path / "cell.folded").read_text().strip()
