"""What each part of an attach costs a web service: one server, the part on and off in turns.

``benchmarks/workloads/web_toggle.py`` runs ``tests/targets/web_app.py`` and switches the
chosen parts on at SIGUSR1 and off at SIGUSR2, on the loop's thread, with no agent and no
client. Each round measures one window with the part off and one with it on, in shuffled
order, under wrk (server pinned to CPU 1, wrk to CPU 0); the figure is the server's CPU per
request (schedstat, all threads), reported as the median over rounds of off/on with a
bootstrap 95 % interval (1.000 = no cost). Needs wrk and 2 CPUs.

Usage::

    python benchmarks/bench_web_toggle.py --server uvicorn-uvloop --parts register,factory --rounds 30
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import shutil
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "workloads"))

from bench_agent import child, read_json  # noqa: E402
from bench_web import SERVERS, wait_listening  # noqa: E402
from bench_web_windows import LOAD_CPU, SERVER_CPU, median_interval, thread_cpu_ns, wrk  # noqa: E402
from web_parts import PARTS  # noqa: E402

WORKLOAD = HERE / "workloads" / "web_toggle.py"


def bench_part(part: str, cfg: argparse.Namespace, rng: random.Random) -> tuple[float, ...]:
    cmd = ["taskset", "-c", SERVER_CPU, cfg.python, str(WORKLOAD), cfg.server, part]
    with child(cmd, stdin=False) as (proc, err):
        ready = read_json(proc, err, cfg.server)
        pid, port = int(ready["pid"]), int(ready["port"])
        wait_listening(port)
        wrk(port, 2, cfg.connections)  # warm-up
        ratios = []
        for r in range(cfg.rounds):
            cpu = {}
            order = ["off", "on"]
            rng.shuffle(order)
            for state in order:
                os.kill(pid, signal.SIGUSR1 if state == "on" else signal.SIGUSR2)
                time.sleep(0.2)
                before = sum(thread_cpu_ns(pid))
                requests = max(1, wrk(port, cfg.duration, cfg.connections))
                cpu[state] = (sum(thread_cpu_ns(pid)) - before) / requests
            ratios.append(cpu["off"] / cpu["on"])
            print(f"  {part} round {r + 1}: off/on {ratios[-1]:.3f}", file=sys.stderr)
        os.kill(pid, signal.SIGUSR2)
    return median_interval(ratios, rng)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default="uvicorn-uvloop", choices=SERVERS)
    p.add_argument("--parts", type=lambda s: s.split(","), default=["register", "factory"])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--duration", type=int, default=2, help="seconds of load per window")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--python", default=sys.executable)
    cfg = p.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("bench_web_toggle: needs wrk and taskset (apt-get install wrk)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("bench_web_toggle: needs 2 CPUs (one for the server, one for wrk)")
    bad = [x for x in cfg.parts if x not in PARTS]
    if bad or cfg.rounds < 2 or cfg.duration < 1:
        raise SystemExit(
            f"bench_web_toggle: bad --parts/--rounds/--duration {bad or ''} (parts: {','.join(PARTS)})"
        )
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    rng = random.Random(cfg.seed)
    results = {part: bench_part(part, cfg, rng) for part in cfg.parts}
    print(
        f"`python benchmarks/bench_web_toggle.py {' '.join(sys.argv[1:])}` — "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, Python {platform.python_version()}, "
        f"{cfg.server}, wrk -t1 -c{cfg.connections} -d{cfg.duration}s, {cfg.rounds} rounds\n"
    )
    print("| part | per CPU-s, off/on: median [95 %] |\n|---|---|")
    for part, (med, lo, hi) in results.items():
        print(f"| {part} | {med:.3f} [{lo:.3f}-{hi:.3f}] |")


if __name__ == "__main__":
    main()
