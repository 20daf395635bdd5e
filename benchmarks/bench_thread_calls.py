"""Instructions per Python call under cProfile and under ThreadCalls (3.12+), by callgrind.

ThreadCalls (profilers/calls.py) puts a dispatcher between ``sys.monitoring`` and one
cProfile per thread; this counts what that costs per call of the profiled code. Each mode runs
``fib(n)`` in a child Python under ``valgrind --tool=callgrind`` for two sizes; the difference
of the two totals divided by the difference of the call counts is the cost of one call (one
PY_START and one PY_RETURN event, plus the calls' own work), free of start-up and of noise
from other jobs on the machine.

Modes: ``plain``; ``cprofile`` (``cProfile.Profile().enable()``, one shared stack);
``thread_calls`` (C dispatcher); ``thread_calls_python`` (the fallback without the C helper);
``left_out`` (ThreadCalls that leaves the calling thread out: what a thread that is not
profiled, such as the agent's, pays per call).

Usage::

    python benchmarks/bench_thread_calls.py [--small 15] [--large 20]   # Python 3.12+
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys

CHILD = """
import sys
sys.setrecursionlimit(10000)
from profilers import calls

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

mode, n = sys.argv[1], int(sys.argv[2])
if mode == "plain":
    recorder = None
elif mode == "cprofile":
    import cProfile
    recorder = cProfile.Profile()
elif mode == "thread_calls":
    recorder = calls.ThreadCalls()
elif mode == "thread_calls_python":
    calls._thread_calls = None
    recorder = calls.ThreadCalls()
elif mode == "left_out":
    recorder = calls.ThreadCalls(lambda thread: False)
else:
    raise SystemExit(f"unknown mode {mode}")
if recorder is not None:
    recorder.enable()
fib(n)
if recorder is not None:
    recorder.disable()
"""

MODES = ("plain", "cprofile", "thread_calls", "thread_calls_python", "left_out")


def fib_calls(n: int) -> int:
    a, b = 1, 1  # calls(0) = calls(1) = 1; calls(n) = 1 + calls(n-1) + calls(n-2)
    for _ in range(n - 1):
        a, b = b, 1 + a + b
    return b if n > 0 else 1


def instructions(mode: str, n: int) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            CHILD,
            mode,
            str(n),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Collected : (\d+)", out.stderr)
    if match is None:
        raise SystemExit(f"no callgrind total for {mode} {n}: {out.stderr[-500:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=15)
    parser.add_argument("--large", type=int, default=20)
    args = parser.parse_args()
    if sys.version_info < (3, 12):
        raise SystemExit("ThreadCalls needs Python 3.12+ (sys.monitoring)")
    calls = fib_calls(args.large) - fib_calls(args.small)
    print(
        f"Python {platform.python_version()}: fib({args.large}) - fib({args.small}) = {calls:,} calls\n"
    )
    print("| mode | instructions per call | vs plain |")
    print("|---|---|---|")
    plain = 0.0
    for mode in MODES:
        per_call = (instructions(mode, args.large) - instructions(mode, args.small)) / calls
        if mode == "plain":
            plain = per_call
        print(f"| {mode} | {per_call:,.0f} | {per_call / plain:.2f}x |")


if __name__ == "__main__":
    main()
