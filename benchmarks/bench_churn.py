"""Instructions per task of the agent's per-task bookkeeping, counted by callgrind.

``workloads/task_churn.py`` makes N tasks of three steps (bursts of 100) plain, with the step
hook, and with the hook plus the task factory; each mode runs at two sizes and the difference
divided by the difference in tasks is the cost of one task (start-up cancels out).
Deterministic: the same totals whatever else the machine is doing.

Usage: python benchmarks/bench_churn.py [--sizes 5000,15000]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

WORKLOAD = Path(__file__).resolve().parent / "workloads" / "task_churn.py"


def count(mode: str, n: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        + [sys.executable, str(WORKLOAD), mode, str(n)],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    match = re.search(r"Collected : (\d+)", out)
    if not match:
        raise SystemExit(f"bench_churn: callgrind printed no total:\n{out[-2000:]}")
    return int(match.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[5000, 15000])
    a = p.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("bench_churn: valgrind not found (apt-get install valgrind)")
    small, large = a.sizes
    per = {
        m: (count(m, large) - count(m, small)) / (large - small) for m in ("plain", "hook", "full")
    }
    print(f"`python benchmarks/bench_churn.py --sizes {small},{large}` (callgrind)\n")
    print("| mode | instructions per task (3 steps) | / plain |")
    print("|---|---|---|")
    for mode, value in per.items():
        print(f"| {mode} | {value:,.0f} | {value / per['plain']:.3f} |")


if __name__ == "__main__":
    main()
