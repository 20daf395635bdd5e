"""What ``vmtop.discovery.discover`` costs with many processes (``vmtop ps``, the fleet view
and ``vmtop exporter --all`` call it; the exporter at every scrape).

    python benchmarks/bench_discovery.py [--processes N] [--agents K] [--rounds R]

Starts N idle processes of this user (``sleep``) and K Python processes with an agent, then
times, median of R rounds: ``discover()`` (every process of this user whose agent listens:
``--all``) and ``discover(pids)`` over every process (each one's state: ``vmtop ps`` with
every process a Python one). Prints the number of processes on the machine and one line each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmtop import discovery  # noqa: E402

AGENT = "import sys, vmtop.agent; vmtop.agent.start(); print('ready', flush=True); sys.stdin.read()"


def timed(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=500)
    ap.add_argument("--agents", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=21)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    idle: list[subprocess.Popen[bytes]] = [
        subprocess.Popen(["sleep", "600"]) for _ in range(args.processes)
    ]
    agents = [
        subprocess.Popen(
            [sys.executable, "-c", AGENT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(args.agents)
    ]
    try:
        for agent in agents:
            assert agent.stdout is not None and agent.stdout.readline().strip() == "ready"
        mine = {p.pid for p in agents}
        assert mine <= set(discovery.discover())
        every = [int(n) for n in os.listdir("/proc") if n.isdigit()]
        print(f"{len(every)} processes, {args.agents} started with an agent")
        t_all = timed(lambda: discovery.discover(), args.rounds)
        t_each = timed(lambda: discovery.discover(every), args.rounds)
        print(f"discover()       (exporter --all): {t_all * 1e3:6.2f} ms")
        print(f"discover(pids)   (ps, each pid)  : {t_each * 1e3:6.2f} ms")
        print(f"per process: {t_all / len(every) * 1e6:.1f} / {t_each / len(every) * 1e6:.1f} us")
    finally:
        for proc in idle:
            proc.kill()
            proc.wait()
        for agent in agents:
            agent.kill()
            agent.wait()


if __name__ == "__main__":
    main()
