"""``vmtop profile`` end to end: real subprocesses, real files parsed back, exit codes."""

from __future__ import annotations

import json
import os
import pstats
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from profilers.stacks import StackModel
from tests.test_profile_calls import read_callgrind

SCHEMA = Path(__file__).parent / "data" / "speedscope-file-format-schema.json"
ROOT = Path(__file__).resolve().parent.parent

PROGRAM = textwrap.dedent(
    """
    import os, sys

    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    def burn():
        total = 0
        for i in range(200_000):
            total += i
        return total

    def main():
        open(os.environ["MARKER"], "w").close() if os.environ.get("MARKER") else None
        print("args", sys.argv[1:])
        burn()
        fib(16)
        code = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 0
        if sys.argv[1:2] == ["boom"]:
            raise RuntimeError("boom from the program")
        sys.exit(code)

    if __name__ == "__main__":
        main()
    """
)


@pytest.fixture()
def program(tmp_path: Path) -> Path:
    path = tmp_path / "prog.py"
    path.write_text(PROGRAM)
    return path


def vmtop(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, exe: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [exe] if exe else [sys.executable, "-m", "vmtop"]
    return subprocess.run(
        [*command, "profile", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def test_sampled_report_on_stdout_and_exit_code_passes_through(program: Path) -> None:
    out = vmtop(str(program), "7", "--flag")
    assert out.returncode == 7, out.stderr
    assert "args ['7', '--flag']" in out.stdout  # the program's own argv and output
    report = out.stdout[out.stdout.index("vmtop profile (sampled)") :]
    assert "call tree" in report and "burn" in report and "main" in report
    assert "runpy" not in report and "profile_cmd" not in report and "target.py" not in report
    assert out.stderr == ""


def test_calls_report_sorted_and_limited(program: Path) -> None:
    out = vmtop("--calls", "--sort", "cnt", "--limit", "3", str(program))
    assert out.returncode == 0, out.stderr
    report = out.stdout[out.stdout.index("vmtop profile (calls") :]
    main_rows = [line for line in report.splitlines() if line.rstrip().endswith("%")]
    assert len(main_rows) == 3
    assert main_rows[0].startswith("fib") and "3193/1" in main_rows[0]  # fib(16): 3193 calls
    assert "sorted by cnt, 3 of" in report


def test_program_error_is_reported_like_python_and_exits_1(program: Path) -> None:
    out = vmtop(str(program), "boom")
    assert out.returncode == 1
    assert "RuntimeError: boom from the program" in out.stderr
    assert "profile_cmd" not in out.stderr and "runpy" not in out.stderr
    assert "vmtop profile (sampled)" in out.stdout  # the profile of what ran is still shown


def parse_output(path: Path) -> int:
    """Parse a written file back; return how many stacks / functions it holds."""
    name = path.name
    if name.endswith(".svg"):
        root = ET.parse(path).getroot()
        assert root.tag.endswith("svg")
        return len(root.findall(".//{http://www.w3.org/2000/svg}g")) or 1
    if name.endswith(".speedscope.json"):
        data = json.loads(path.read_text())
        jsonschema.validate(data, json.loads(SCHEMA.read_text()))
        return len(data["profiles"][0]["samples"])
    if name.endswith(".folded"):
        model = StackModel.from_folded(path.read_text(), unit="seconds")
        assert any("burn" in f.function for f in model.frames)
        return len(model)
    if name.endswith(".html"):
        text = path.read_text()
        assert text.lstrip().lower().startswith("<!doctype html") and "<svg" in text
        return 1
    if name.endswith(".pstats"):
        stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
        fib_rows = [v for k, v in stats.items() if k[2] == "fib"]
        assert fib_rows[0][1] == 3193
        return len(stats)
    if name.endswith(".callgrind"):
        graph = read_callgrind(path.read_text())
        fib = next(v for k, v in graph.items() if k.startswith("fib "))
        assert list(fib.calls.values()) == [3192]
        return len(graph)
    raise AssertionError(name)


@pytest.mark.parametrize(
    ("calls", "name"),
    [
        (False, "out.svg"),
        (False, "out.speedscope.json"),
        (False, "out.folded"),
        (False, "out.html"),
        (True, "out.svg"),
        (True, "out.pstats"),
        (True, "out.callgrind"),
    ],
)
def test_each_output_format_is_written_and_parses(
    program: Path, tmp_path: Path, calls: bool, name: str
) -> None:
    target = tmp_path / name
    out = vmtop(*(["--calls"] if calls else []), "-o", str(target), str(program))
    assert out.returncode == 0, out.stderr
    assert "vmtop profile (" not in out.stdout  # no text report when writing a file
    (line,) = out.stderr.splitlines()
    count = parse_output(target)
    assert count > 0
    assert line.startswith(f"wrote {target} (")
    unit = "functions" if name.endswith((".pstats", ".callgrind")) else "stacks"
    assert line.endswith(f" {unit})")


def test_module_target_and_installed_entry_point(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(PROGRAM.replace('__name__ == "__main__"', "True"))
    exe = Path(sys.executable).parent / "vmtop"
    assert exe.exists(), "the package is installed (pip install -e .) with its entry point"
    target = tmp_path / "mod.folded"
    out = vmtop("-o", str(target), "-m", "pkg", "5", cwd=tmp_path, exe=str(exe))
    assert out.returncode == 5, out.stderr
    assert "args ['5']" in out.stdout
    assert parse_output(target) > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "no such script"),
        (["-o", "{tmp}/out.txt", "{prog}"], "unknown output format '.txt'"),
        (["-o", "{tmp}/no/such/dir/out.svg", "{prog}"], "no directory"),
        (["-o", "{tmp}", "{prog}"], "no output format suffix"),
        (["-o", "{tmp}/out.pstats", "{prog}"], "add --calls"),
        (["-o", "{tmp}/out.callgrind", "{prog}"], "add --calls"),
        (["--sort", "acc", "{prog}"], "add --calls"),
        (["-i", "zero", "{prog}"], "interval must be a number"),
        (["--calls", "--limit", "0", "{prog}"], "expected a positive number"),
        (["-m", "no_such_module_here"], "no module named no_such_module_here"),
        ([], "no script given"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_running(
    program: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    marker = tmp_path / "ran"
    subst = {"missing": str(tmp_path / "missing.py"), "tmp": str(tmp_path), "prog": str(program)}
    out = vmtop(*(a.format(**subst) for a in args), env={"MARKER": str(marker)}, cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.splitlines()
    assert message in line
    assert line.startswith("vmtop profile: error:")
    assert not marker.exists(), "the program must not run when the command line is wrong"
