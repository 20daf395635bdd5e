"""``benchmarks/bench_agent.py --quick`` runs end to end and reports well-formed figures.

No timing thresholds: only that every part ran, every figure is a positive finite number
of the promised shape, and the Markdown tables came out.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
MODES = ("plain", "run", "attached")
SORTS = ("reductions", "mailbox", "memory")


def positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def check_summary(s: dict[str, Any]) -> None:
    assert set(s) == {"median", "min", "max"}
    assert all(positive(v) for v in s.values()), s
    assert s["min"] <= s["median"] <= s["max"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_agent.py", "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def test_machine_record(quick_run: tuple[dict[str, Any], str]) -> None:
    res, _ = quick_run
    m = res["machine"]
    assert m["quick"] is True
    assert positive(m["nproc"])
    assert m["python"].count(".") == 2
    assert len(m["load_before"]) == 3 and len(m["load_after"]) == 3
    assert "bench_agent.py --quick" in m["command"]


def test_throughput_parts(quick_run: tuple[dict[str, Any], str]) -> None:
    res, _ = quick_run
    for part, key in (("chain", "items_per_s"), ("http", "responses_per_s")):
        data = res[part]
        for mode in MODES:
            check_summary(data[key][mode])
            assert len(data["runs"][mode]) == data["rounds"] >= 1
        assert set(data[key + "_ratio"]) == {"run", "attached", "attached/run"}
        for name in ("run", "attached", "attached/run"):
            check_summary(data[key + "_ratio"][name])
    chain = res["chain"]
    assert all(r["tasks"] == 1000 for m in MODES for r in chain["runs"][m])
    assert all(r["items"] > 0 for m in MODES for r in chain["runs"][m])
    # The attached runs really had a client taking snapshots during the window.
    # (--quick's window is short: on a loaded machine the first refresh may fall after it.)
    assert all(isinstance(r["snapshots"], int) for r in chain["runs"]["attached"])
    assert "snapshots" not in chain["runs"]["plain"][0]
    for mode in MODES:
        share = res["http"]["server_cpu_share"][mode]
        assert 0 < share["median"] <= res["machine"]["nproc"]


def test_snapshot_part(quick_run: tuple[dict[str, Any], str]) -> None:
    res, _ = quick_run
    sizes = res["snapshot"]["sizes"]
    assert list(sizes) == ["1000"]
    d = sizes["1000"]
    assert d["tasks"] >= 1010  # the idle tasks, the busy ones and main
    for phase in ("main", "settled"):
        p = d[phase]
        for sort in SORTS:
            check_summary(p["loop_time"][sort])
            check_summary(p["cost"][sort])
            # The loop's share is part of the whole request's cost.
            assert p["loop_time"][sort]["min"] <= p["cost"][sort]["max"]
        assert p["gen2_collections"] >= 0
    assert d["settled"]["after_snapshots"] > len(SORTS)


def test_hooks_part(quick_run: tuple[dict[str, Any], str]) -> None:
    res, _ = quick_run
    hooks = res["hooks"]
    names = {"none", "step hook (C)", "step hook (Python)", "mailbox hook", "step + mailbox"}
    assert names | {"Collector.attach()"} <= set(hooks["cpu_ns_per_item"])
    for s in hooks["cpu_ns_per_item"].values():
        check_summary(s)
    assert "none" not in hooks["extra_cpu_ns_per_item"]
    assert all(positive(v) for v in hooks["micro"].values())
    assert "Handle._run: agent step hook (C)" in hooks["micro"]
    assert "Handle._run: agent step hook (Python)" in hooks["micro"]


def test_markdown_tables(quick_run: tuple[dict[str, Any], str]) -> None:
    _, stdout = quick_run
    for title in ("### Worst case", "### Realistic", "### Top-50 snapshot", "### In process"):
        assert title in stdout
    assert "| attached |" in stdout
    assert "| attached / run |" in stdout
    assert "| 1,000 |" in stdout
