"""``benchmarks/bench_trio.py --quick`` runs end to end and reports well-formed figures.

No timing thresholds: only that both parts ran for both runtimes, every figure is a positive
finite number of the promised shape, and the Markdown tables came out.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def check_summary(s: dict[str, Any]) -> None:
    assert set(s) == {"median", "min", "max"}
    assert all(positive(v) for v in s.values()), s
    assert s["min"] <= s["median"] <= s["max"]


def test_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_trio.py", "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    for runtime in ("trio", "asyncio"):
        data = res["modes"][runtime]
        for key in ("items_per_s", "items_per_cpu_s"):
            for mode in ("plain", "run", "attached"):
                check_summary(data[key][mode])
            for pair in ("run", "attached", "attached/run"):
                check_summary(data[key + "_ratio"][pair])
        # A 1 s window may end before a slow refresh comes back: none is a valid count.
        each = data["snapshot_loop_time_each"]
        assert math.isfinite(each) and each >= 0
    for key in ("ns_per_step_plain", "ns_per_step_instrumented"):
        check_summary(res["inproc"][key])
    assert "| plain steps/s |" in proc.stdout and "| added by the instrument |" in proc.stdout
