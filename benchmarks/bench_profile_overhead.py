"""Overhead of ``vmtop.profile`` (sampled and calls mode) against plain execution.

Paired and interleaved: each round runs the workload plain, sampled and under cProfile in a
rotating order, and each profiled time is divided by the plain time of the same round; the
figure is the median of those ratios over the rounds. Two times per mode:

* ``run``: the workload with the profiler on (the report's ``duration``);
* ``total``: the whole ``profile(...)`` call, i.e. also building the report model.

Usage::

    python benchmarks/bench_profile_overhead.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

from profilers.profile import profile


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def call_heavy() -> int:
    """242,785 pure-Python calls (fib(25)): the profilers' hooks fire on every call."""
    return fib(25)


def allocation_heavy() -> int:
    """Allocates and frees 200k dicts, strings and tuples (10 x 20k rows, memory reused)."""
    total = 0
    for _ in range(10):
        rows = [{"id": i, "name": str(i), "pair": (i, i * 2)} for i in range(20_000)]
        index = {row["name"]: row for row in rows}
        total += len(index)
    return total


WORKLOADS: dict[str, Callable[[], int]] = {
    "call-heavy (fib(25), 243k calls)": call_heavy,
    "allocation-heavy (10 x 20k dicts + str + tuples)": allocation_heavy,
}
MODES = ("plain", "sampled", "calls")


def measure(fn: Callable[[], int], mode: str) -> tuple[float, float]:
    """(run seconds, total seconds) of one execution of ``fn`` in ``mode``."""
    gc.collect()
    start = time.perf_counter()
    if mode == "plain":
        fn()
        elapsed = time.perf_counter() - start
        return elapsed, elapsed
    report = profile(fn, calls=(mode == "calls"))
    total = time.perf_counter() - start
    return report.duration, total


def bench(fn: Callable[[], int], rounds: int) -> dict[str, dict[str, float]]:
    ratios: dict[str, dict[str, list[float]]] = {m: {"run": [], "total": []} for m in MODES[1:]}
    plain_times: list[float] = []
    for mode in MODES:  # warm-up: imports, caches
        measure(fn, mode)
    for r in range(rounds):
        order = MODES[r % 3 :] + MODES[: r % 3]
        times = {mode: measure(fn, mode) for mode in order}
        plain = times["plain"][0]
        plain_times.append(plain)
        for mode in MODES[1:]:
            ratios[mode]["run"].append(times[mode][0] / plain)
            ratios[mode]["total"].append(times[mode][1] / plain)
    out = {"plain": {"seconds": statistics.median(plain_times)}}
    for mode, values in ratios.items():
        out[mode] = {
            "run": statistics.median(values["run"]),
            "total": statistics.median(values["total"]),
            "min": min(values["run"]),
            "max": max(values["run"]),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.rounds} rounds, median of paired ratios (min-max of run ratios)\n"
    )
    print("| workload | plain | sampled run | sampled total | calls run | calls total |")
    print("|---|---|---|---|---|---|")
    for name, fn in WORKLOADS.items():
        res = bench(fn, args.rounds)
        s, c = res["sampled"], res["calls"]
        print(
            f"| {name} | {res['plain']['seconds'] * 1000:.1f} ms "
            f"| {s['run']:.2f}x ({s['min']:.2f}-{s['max']:.2f}) | {s['total']:.2f}x "
            f"| {c['run']:.2f}x ({c['min']:.2f}-{c['max']:.2f}) | {c['total']:.2f}x |"
        )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
