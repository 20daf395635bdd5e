"""What watching a web service costs it, in one server process: paired windows, pinned CPUs.

``bench_web.py`` starts a fresh server per mode, so each ratio also carries the difference
between two processes (memory layout, hash seeds, which connections wrk's threads got). Here
one server runs under ``vmtop run`` for the whole benchmark and the modes take turns on it:

* ``run``: no client (the agent is loaded, nothing is installed: the hooks come out when the
  last client leaves, which ``tests/test_web_services.py`` checks);
* ``idle``: a client attached (step hook, task factory, lag probe, GC watcher) that took one
  snapshot and then stays silent;
* ``refresh``: a client refreshing a top-50 snapshot every second, as ``vmtop top`` does.

The server is pinned to CPU 1, wrk and this process (the client) to CPU 0, so the load
generator and the client never take the server's CPU and the server's CPU time per request
is what the watching costs it (all its threads: the agent's work on snapshots included).
Each round runs every mode once in a shuffled order; the figures are medians over rounds of
the per-round ratios to ``run``. Needs wrk and at least 2 CPUs.

Usage::

    python benchmarks/bench_web_windows.py --servers uvicorn-uvloop --rounds 8 --duration 3
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_agent import Refresher, child, loadavg, proc_cpu, read_json  # noqa: E402
from bench_web import APP, SERVERS, rss_mib, wait_listening  # noqa: E402

MODES = ("run", "idle", "refresh")
SERVER_CPU, LOAD_CPU = "1", "0"


def wrk(port: int, seconds: int, connections: int) -> int:
    """Requests wrk completed in ``seconds``, wrk pinned to the load CPU."""
    out = subprocess.run(
        ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
        + [f"http://127.0.0.1:{port}/item/2"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    match = re.search(r"(\d+) requests in", out)
    if not match:
        raise SystemExit(f"bench_web_windows: wrk printed no count:\n{out}")
    return int(match.group(1))


def window(pid: int, port: int, mode: str, cfg: argparse.Namespace) -> dict[str, Any]:
    refresher = None
    if mode != "run":
        refresher = Refresher(pid, cfg.refresh)
        refresher.client.snapshot(limit=50)  # the hooks are in, the first refresh done
        if mode == "refresh":
            refresher.start()
    time.sleep(0.3)
    rss0, cpu0 = rss_mib(pid), proc_cpu(pid)
    requests = wrk(port, cfg.duration, cfg.connections)
    rss1, cpu1 = rss_mib(pid), proc_cpu(pid)
    out: dict[str, Any] = {
        "rate": requests / cfg.duration,
        "cpu_per_request": (cpu1 - cpu0) / max(1, requests),
        "rss_growth": rss1 - rss0,
    }
    if refresher is not None:
        if mode == "refresh":
            refresher.stop()  # the client leaves: the hooks come out before the next window
        else:
            refresher.client.close()
        out["snapshots"] = len(refresher.loop_times)
        out["loop_time"] = statistics.median(refresher.loop_times or [0.0])
        time.sleep(0.5)
    return out


def bench_server(server: str, cfg: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    cmd = ["taskset", "-c", SERVER_CPU, cfg.python, "-m", "vmtop", "run", "-q", str(APP), server]
    with child(cmd, stdin=False) as (proc, err):
        ready = read_json(proc, err, server)
        pid, port = int(ready["pid"]), int(ready["port"])
        wait_listening(port)
        wrk(port, 2, cfg.connections)  # warm-up: imports, caches, first connections
        rounds: list[dict[str, dict[str, Any]]] = []
        for r in range(cfg.rounds):
            order = list(MODES)
            rng.shuffle(order)
            rounds.append({mode: window(pid, port, mode, cfg) for mode in order})
            print(
                f"  {server} round {r + 1}: "
                + "  ".join(
                    f"{m} {rounds[-1][m]['rate']:.0f}/s "
                    f"{rounds[-1][m]['cpu_per_request'] * 1e6:.1f} µs"
                    for m in MODES
                ),
                file=sys.stderr,
            )
    out: dict[str, Any] = {
        "rounds": rounds,
        "run_rate": statistics.median(r["run"]["rate"] for r in rounds),
    }
    for mode in ("idle", "refresh"):
        rates = [r[mode]["rate"] / r["run"]["rate"] for r in rounds]
        cpus = [r["run"]["cpu_per_request"] / r[mode]["cpu_per_request"] for r in rounds]
        out[mode] = {
            "rate": statistics.median(rates),
            "cpu": statistics.median(cpus),
            "cpu_range": (min(cpus), max(cpus)),
        }
    out["run_us"] = statistics.median(r["run"]["cpu_per_request"] * 1e6 for r in rounds)
    out["loop_time"] = statistics.median(r["refresh"]["loop_time"] for r in rounds)
    out["rss_refresh"] = statistics.median(r["refresh"]["rss_growth"] for r in rounds)
    return out


def markdown(cfg: argparse.Namespace, results: dict[str, Any], load: tuple[float, float]) -> str:
    lines = [
        f"`python benchmarks/bench_web_windows.py {' '.join(sys.argv[1:])}` — "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, Python {platform.python_version()}, "
        f"wrk -t1 -c{cfg.connections} -d{cfg.duration}s, {cfg.rounds} rounds, one server "
        f"process pinned to CPU {SERVER_CPU}, load average {load[0]} before / {load[1]} after",
        "",
        "Requests per server CPU-second, mode / no client (median of the per-round ratios, "
        "min-max); requests/s ratio beside it.",
        "",
        "| server | no client: µs CPU / request | idle client: per CPU-s (min-max) | req/s "
        "| refreshing 1 s: per CPU-s (min-max) | req/s | snapshot loop time | RSS growth "
        "refreshing |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for server, r in results.items():
        cells = []
        for mode in ("idle", "refresh"):
            lo, hi = r[mode]["cpu_range"]
            cells.append(f"{r[mode]['cpu']:.3f} ({lo:.3f}-{hi:.3f}) | {r[mode]['rate']:.3f}")
        lines.append(
            f"| {server} | {r['run_us']:.1f} | {cells[0]} | {cells[1]}"
            f" | {r['loop_time'] * 1000:.2f} ms | {r['rss_refresh']:+.1f} MiB |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--servers", type=lambda s: s.split(","), default=list(SERVERS))
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--duration", type=int, default=3, help="seconds of load per window")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--refresh", type=float, default=1.0, help="seconds between snapshots")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--python", default=sys.executable)
    cfg = p.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("bench_web_windows: needs wrk and taskset (apt-get install wrk)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("bench_web_windows: needs 2 CPUs (one for the server, one for wrk)")
    bad = [s for s in cfg.servers if s not in SERVERS]
    if bad or cfg.rounds < 1 or cfg.duration < 1:
        raise SystemExit(f"bench_web_windows: bad --servers/--rounds/--duration {bad or ''}")
    os.sched_setaffinity(0, {int(LOAD_CPU)})  # the client's CPU is not the server's
    rng = random.Random(cfg.seed)
    load0 = loadavg()
    results = {s: bench_server(s, cfg, rng) for s in cfg.servers}
    print(markdown(cfg, results, (load0, loadavg())))


if __name__ == "__main__":
    main()
