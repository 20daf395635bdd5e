"""``vmtop allocations`` and ``vmtop gc`` end to end: real subprocesses, files parsed back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from profilers.stacks import StackModel

SCHEMA = Path(__file__).parent / "data" / "speedscope-file-format-schema.json"
ROOT = Path(__file__).resolve().parent.parent
# The checkout first, so that any interpreter runs this vmtop (installed or not).
PYTHONPATH = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)

PROGRAM = textwrap.dedent(
    """\
    import os, sys
    CACHE = []

    def load():
        CACHE.append([bytes(1_000_000) for _ in range(10)])

    class Node:
        def __init__(self):
            self.me = self

    def churn():
        for _ in range(20_000):
            Node()

    def main():
        if os.environ.get("MARKER"):
            open(os.environ["MARKER"], "w").close()
        print("args", sys.argv[1:])
        load()
        churn()
        if sys.argv[1:2] == ["boom"]:
            raise RuntimeError("boom from the program")
        sys.exit(int(sys.argv[1]) if sys.argv[1:2] and sys.argv[1].isdigit() else 0)

    if __name__ == "__main__":
        main()
    """
)
LOAD_LINE = 5  # the line of PROGRAM that keeps 10 MB


@pytest.fixture()
def program(tmp_path: Path) -> Path:
    path = tmp_path / "prog.py"
    path.write_text(PROGRAM)
    return path


def vmtop(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmtop", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": PYTHONPATH, **(env or {})},
    )


def test_allocations_report_and_exit_code(program: Path) -> None:
    out = vmtop("allocations", "--depth", "4", str(program), "3", "--flag", cwd=program.parent)
    assert out.returncode == 3, out.stderr
    assert "args ['3', '--flag']" in out.stdout
    report = out.stdout[out.stdout.index("Allocations: ") :]
    rows = report.splitlines()
    first = next(i for i, line in enumerate(rows) if line.lstrip().startswith("bytes"))
    top = rows[first + 1]
    assert f"prog.py:{LOAD_LINE}" in top and "load" in top and "9.5 MiB" in top
    assert "peak" in report and "net retained" in report
    for runner in ("allocations_cmd", "target.py", "profilers/", "pkgutil", "tracemalloc.py"):
        assert runner not in report
    assert out.stderr == ""


def test_allocations_json_by_count_per_function(program: Path) -> None:
    out = vmtop(
        "allocations", "--json", "--depth", "2", "--by", "count", "--group", "function",
        "--limit", "3", str(program),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout[out.stdout.index("{") :])
    assert len(data["top"]) == 3
    assert data["top_by_bytes"][0]["line"] == LOAD_LINE
    assert data["top_by_bytes"][0]["file"] == str(program)
    counts = [row["count"] for row in data["top"]]
    assert counts == sorted(counts, reverse=True) and all(row["line"] == 0 for row in data["top"])
    assert data["top_functions"][0]["function"] == "load"
    assert data["net_bytes"] >= 10_000_000 and data["peak_bytes"] >= data["net_bytes"]


@pytest.mark.parametrize(
    "name", ["alloc.svg", "alloc.speedscope.json", "alloc.folded", "alloc.html"]
)
def test_allocations_flamegraph_outputs(program: Path, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    out = vmtop("allocations", "--depth", "5", "-o", str(path), str(program))
    assert out.returncode == 0, out.stderr
    assert f"wrote {path}" in out.stderr and "Allocations: " in out.stdout
    if name.endswith(".svg"):
        root = ET.parse(path).getroot()
        assert root.tag.endswith("svg") and "load" in path.read_text()
    elif name.endswith(".speedscope.json"):
        data = json.loads(path.read_text())
        jsonschema.validate(data, json.loads(SCHEMA.read_text()))
        names = [f["name"] for f in data["shared"]["frames"]]
        assert "load" in names and "main" in names
    elif name.endswith(".folded"):
        model = StackModel.from_folded(path.read_text(), unit="bytes")
        heaviest = max(model.items(), key=lambda item: item[1])
        frames, weight = heaviest
        assert [f.function for f in frames] == ["<module>", "main", "load"]
        assert (frames[-1].file, frames[-1].line) == (str(program), LOAD_LINE)
        assert weight >= 10_000_000
        for frames, _ in model.items():  # the runner's frames are cut above the program
            assert not any("runpy" in f.file or "vmtop" in f.file for f in frames[:-1]), frames
    else:
        assert path.read_text().lstrip().lower().startswith("<!doctype html")


def test_allocations_of_a_module(tmp_path: Path) -> None:
    pkg = tmp_path / "memdemo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(PROGRAM)
    out = vmtop("allocations", "--depth", "3", "-m", "memdemo", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"memdemo/__main__.py:{LOAD_LINE}" in out.stdout


def test_program_error_exits_1_with_its_traceback_and_the_report(program: Path) -> None:
    out = vmtop("allocations", "--depth", "2", str(program), "boom")
    assert out.returncode == 1
    assert "RuntimeError: boom from the program" in out.stderr
    assert "allocations_cmd" not in out.stderr and "runpy" not in out.stderr
    assert "Allocations: " in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["allocations", "missing.py"], "no such script: missing.py"),
        (["allocations", "-m", "no_such_module_xyz"], "no module named no_such_module_xyz"),
        (["allocations", "-o", "out.png", "PROG"], "unknown output format '.png'"),
        (["allocations", "-o", "/no/such/dir/a.svg", "PROG"], "no directory /no/such/dir"),
        (["allocations", "--depth", "-3", "PROG"], "depth must be between 1 and 65535, not -3"),
        (["allocations", "--depth", "x", "PROG"], "depth must be a whole number"),
        (["allocations", "--by", "size", "PROG"], "invalid choice: 'size'"),
        (["allocations", "--limit", "0", "PROG"], "expected a positive number"),
        (["allocations"], "no script given"),
        (["gc", "missing.py"], "no such script: missing.py"),
        (["gc", "-m", "no_such_module_xyz"], "no module named no_such_module_xyz"),
    ],
)
def test_bad_input_is_one_line_exit_2_before_running(
    program: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    marker = tmp_path / "ran"
    argv = [str(program) if a == "PROG" else a for a in args]
    out = vmtop(*argv, cwd=tmp_path, env={"MARKER": str(marker)})
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert not marker.exists()  # checked before the program ran


def test_unwritable_output_directory(program: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    out = vmtop("allocations", "-o", str(locked / "a.svg"), str(program))
    assert out.returncode == 2 and "is not writable" in out.stderr


def test_output_path_is_a_directory(program: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.svg"
    target.mkdir()
    out = vmtop("allocations", "-o", str(target), str(program))
    assert out.returncode == 2 and "it is a directory" in out.stderr
    assert out.stderr.count("\n") == 1


def test_gc_report_and_exit_code(program: Path) -> None:
    out = vmtop("gc", str(program), "4")
    assert out.returncode == 4, out.stderr
    report = out.stdout[out.stdout.index("GC pressure: ") :]
    assert "prog.py" in report and "collections" in report and "% of wall" in report
    assert "freed by the cycle collector" in report  # 20,000 self-referencing Nodes
    lines = report.splitlines()
    gen0 = next(line for line in lines if line.split()[:1] == ["0"])
    assert int(gen0.split()[1].replace(",", "")) >= 5


def test_gc_json(program: Path) -> None:
    out = vmtop("gc", "--json", str(program))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout[out.stdout.index("{") :])
    assert len(data["generations"]) == 3 and len(data["thresholds"]) == 3
    assert sum(g["collected"] for g in data["generations"]) >= 10_000
    assert 0 < data["pause_total_s"] < data["wall_s"]


def test_help_lists_both_commands() -> None:
    out = vmtop("--help")
    assert "allocations" in out.stdout and " gc " in out.stdout
