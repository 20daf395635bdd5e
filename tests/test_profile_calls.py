"""Calls mode (cProfile): exact counts, callers/callees, pstats and callgrind files."""

from __future__ import annotations

import json
import pstats
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from profilers.calls_report import CallEdge, CallsProfile, FunctionCalls, PstatsKey
from profilers.profile import profile
from profilers.stacks import StackModel

pytestmark = pytest.mark.internals  # runs under every supported Python in CI


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def burner() -> int:
    total = 0
    for i in range(300_000):
        total += i * i
    return total


def tiny(x: int) -> int:
    return x + 1


def mixed() -> int:
    total = burner()
    for i in range(200):
        total += tiny(i)
    return total


# a calls b twice and c once; b calls c.
def c() -> int:
    return sum(range(50))


def b() -> int:
    return c()


def a() -> int:
    return b() + b() + c()


def _one(report: CallsProfile, name: str) -> FunctionCalls:
    found = report.find(name)
    assert len(found) == 1, [f.frame.label for f in found]
    return found[0]


def _edges(edges: dict[PstatsKey, CallEdge], report: CallsProfile) -> dict[str, int]:
    return {report.functions[k].frame.function: e.calls for k, e in edges.items()}


def test_fib_20_is_called_21891_times() -> None:
    report = profile(fib, 20, calls=True)
    assert isinstance(report, CallsProfile)
    assert report.return_value == 6765
    f = _one(report, "fib")
    assert (f.calls, f.primitive) == (21891, 1)
    assert f.frame.file == __file__
    text = report.render_text(width=140)
    assert "21891/1" in text
    # Only the user's function: no profiler plumbing (runner frames, Profiler.disable).
    assert [x.frame.function for x in report.functions.values()] == ["fib"]


def test_the_function_that_burns_the_time_is_first_by_own() -> None:
    report = profile(mixed, calls=True)
    rows = report.select()  # default: sort by own
    assert rows[0].frame.function == "burner"
    assert _one(report, "tiny").calls == 200
    assert report.select(sort="cnt")[0].frame.function == "tiny"
    assert report.select(sort="acc")[0].frame.function == "mixed"
    # The rendered report lists burner's paragraph first.
    lines = report.render_text(width=140).splitlines()
    main_rows = [line for line in lines if line.rstrip().endswith("%")]
    assert main_rows[0].startswith("burner")


def test_callers_and_callees_of_a_known_graph_are_exact() -> None:
    report = profile(a, calls=True)
    fa, fb, fc = _one(report, "a"), _one(report, "b"), _one(report, "c")
    assert (fa.calls, fb.calls, fc.calls) == (1, 2, 3)
    assert _edges(fa.callers, report) == {}
    assert _edges(fa.callees, report) == {"b": 2, "c": 1}
    assert _edges(fb.callers, report) == {"a": 2}
    assert _edges(fb.callees, report) == {"c": 2}
    assert _edges(fc.callers, report) == {"a": 1, "b": 2}
    assert _edges(fc.callees, report) == {"<built-in method builtins.sum>": 3}
    # Edge times split the callee's own and cumulative time between its callers.
    assert sum(e.own for e in fc.callers.values()) == pytest.approx(fc.own, rel=1e-9, abs=1e-12)
    assert sum(e.acc for e in fc.callers.values()) == pytest.approx(fc.acc, rel=1e-9, abs=1e-12)
    assert fa.acc >= fb.acc >= fb.own
    # fprof-style paragraphs: callers above the function, callees below.
    text = report.report(sort="cnt", edges=None).render_text(width=140)
    block = text[text.index("\nc  ") - 200 :]
    assert "{ b " in block and "{ a " in block


def test_report_sort_limit_filter() -> None:
    report = profile(mixed, calls=True)
    assert len(report.report(limit=1).rows) == 1
    assert [f.frame.function for f in report.table(filter="tiny").rows] == ["tiny"]
    # A module/path substring matches on the file.
    assert {
        f.frame.function for f in report.table(filter="test_profile_calls", limit=None).rows
    } == {
        "mixed",
        "burner",
        "tiny",
    }
    assert report.table(filter="no-such-thing").rows == []
    with pytest.raises(ValueError, match="sort must be one of"):
        report.report(sort="bogus")
    assert "1 of" in report.report(limit=1).render_text(width=140)


def test_pstats_file_loads_with_counts(tmp_path: Path) -> None:
    report = profile(fib, 18, calls=True)
    path = tmp_path / "fib.pstats"
    assert report.save(path) == "pstats"
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    ((key, (cc, nc, _tt, _ct, callers)),) = [(k, v) for k, v in stats.items() if k[2] == "fib"]
    assert (nc, cc) == (8361, 1)
    assert key[0] == __file__
    assert callers[key][0] == 8360  # fib called itself 8360 times
    again = CallsProfile.load(path)
    assert _one(again, "fib").calls == 8361


@dataclass
class CallgrindFunction:
    own: int = 0
    calls: dict[str, int] = field(default_factory=dict)


def read_callgrind(text: str) -> dict[str, CallgrindFunction]:
    """A small callgrind reader: per function, its own cost and {callee: calls}."""
    names: dict[str, str] = {}
    out: dict[str, CallgrindFunction] = {}
    current = callee = ""
    pending: tuple[str, int] | None = None

    def name(value: str) -> str:
        value = value.strip()
        if value.startswith("("):
            ref, _, rest = value.partition(")")
            if rest.strip():
                names[ref] = rest.strip()
            return names[ref]
        return value

    for line in text.splitlines():
        if line.startswith("cfn="):
            callee = name(line[4:])
        elif not line or line.startswith(("#", "fl=", "fi=", "fe=", "cfl=", "cfi=")):
            continue  # comments, file names
        elif "=" not in line and ":" in line:
            continue  # header lines ("events: ns")
        elif line.startswith("fn="):
            current = name(line[3:])
            out[current] = CallgrindFunction()
        elif line.startswith("calls="):
            count, _target = line[6:].split()
            pending = (callee, int(count))
        elif line[0].isdigit():
            _position, cost = line.split()
            if pending is not None:
                out[current].calls[pending[0]] = pending[1]
                pending = None
            else:
                out[current].own += int(cost)
    return out


def test_callgrind_file_parses_back(tmp_path: Path) -> None:
    report = profile(a, calls=True)
    path = tmp_path / "a.callgrind"
    assert report.save(path) == "callgrind"
    text = path.read_text()
    assert text.startswith("# callgrind format\nversion: 1\n")
    assert "events: ns" in text
    graph = read_callgrind(text)
    by_short = {k.split(" ")[0]: v for k, v in graph.items()}
    assert by_short["a"].calls == {
        next(k for k in graph if k.startswith("b ")): 2,
        next(k for k in graph if k.startswith("c ")): 1,
    }
    assert list(by_short["b"].calls.values()) == [2]
    own_ns = sum(v.own for v in graph.values())
    assert own_ns == pytest.approx(report.total_own * 1e9, abs=len(graph))


def test_flamegraph_from_calls_is_an_approximation_that_keeps_the_time(tmp_path: Path) -> None:
    report = profile(a, calls=True)
    model = report.stacks
    stacks = {";".join(f.function for f in frames): w for frames, w in model.items()}
    assert {"a", "a;b", "a;b;c", "a;c"} <= set(stacks)
    assert model.total == pytest.approx(report.total_own, rel=1e-6)
    assert report.save(tmp_path / "a.folded") == "folded"
    back = StackModel.from_folded((tmp_path / "a.folded").read_text(), unit="seconds")
    assert back.total == pytest.approx(model.total, rel=1e-3)
    # Recursion folds into the frame already on the stack: fib has no fib child.
    rec = profile(fib, 12, calls=True).stacks
    assert [[f.function for f in frames] for frames, _ in rec.items()] == [["fib"]]


def test_context_manager_and_decorator_in_calls_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with profile(calls=True) as p:
        fib(10)
    assert _one(p.report, "fib").calls == 177
    assert p.find("fib")[0].calls == 177  # the block's object is the report

    @profile(calls=True)
    def run(n: int) -> int:
        return fib(n)

    assert run(11) == 89
    assert _one(run.last_profile, "fib").calls == 287
    assert "287/1" in capsys.readouterr().err


def test_to_dict_is_json() -> None:
    report = profile(a, calls=True)
    data = json.loads(report.to_json())
    assert data["kind"] == "calls"
    by_name = {f["function"]: f for f in data["functions"]}
    assert by_name["c"]["calls"] == 3
    assert {e["function"]: e["calls"] for e in by_name["c"]["callers"]} == {"a": 1, "b": 2}
    assert data["total_calls"] == report.total_calls == 1 + 2 + 3 + 3
