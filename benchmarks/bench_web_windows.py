"""What watching a web service costs it, in one server process: many short paired windows.

``bench_web.py`` starts a fresh server per mode, so each ratio also carries the difference
between two processes (memory layout, hash seeds, which connections wrk's threads got). Here
one server runs under ``vmtop run`` for the whole benchmark and the modes take turns on it:

* ``run``: no client (the agent is loaded, nothing is installed: the hooks come out when the
  last client leaves, which ``tests/test_web_services.py`` checks);
* ``again``: a second no-client window, the control: ``again`` against ``run`` is what the
  procedure reads when nothing differs;
* ``idle``: a client attached (step hook, task factory, lag probe, GC watcher) that took one
  snapshot and then stays silent;
* ``refresh``: a client refreshing a top-50 snapshot every second, as ``vmtop top`` does (the
  first at half a second into the window, so a window of N seconds holds N refreshes).

The server is pinned to CPU 1, wrk and this process (the client) to CPU 0, so the load
generator and the client never take the server's CPU. The figure is the server's CPU time per
request, summed over its threads from ``/proc/PID/task/*/schedstat`` (nanoseconds; the agent's
threads are reported apart). The same mode moves by 4-7 % from one window to the next on
these VMs (interference from outside comes in bursts), so the benchmark takes many short
rounds, each running every mode once in a shuffled order, and reports per mode:

* the median over rounds of ``run``'s CPU per request / the mode's, with a bootstrap 95 %
  interval of that median (1.000 = no cost; 0.990 = 1 % more CPU per request);
* the ratio of the lower quartiles of the two modes' windows: interference only adds time,
  so the quieter windows say most about the code's own cost.

Usage::

    python benchmarks/bench_web_windows.py --servers uvicorn-uvloop --rounds 60 --duration 2
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

from bench_agent import Refresher, child, loadavg, read_json  # noqa: E402
from bench_web import APP, SERVERS, rss_mib, wait_listening  # noqa: E402

MODES = ("run", "again", "idle", "refresh")
CLIENT_MODES = ("idle", "refresh")
SERVER_CPU, LOAD_CPU = "1", "0"
SETTLE = 0.2  # seconds between a mode's set-up and its window


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


def thread_cpu_ns(pid: int) -> tuple[int, int]:
    """(main thread, other threads) CPU nanoseconds of ``pid`` so far (schedstat)."""
    main = other = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
        if int(tid) == pid:
            main += ns
        else:
            other += ns
    return main, other


def context_switches(pid: int) -> int:
    """Context switches of all of ``pid``'s threads so far, voluntary and not (a GIL hand-off
    between the loop and the agent's threads on the server's one CPU is one or two)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_")):
                        total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total


def window(pid: int, port: int, mode: str, cfg: argparse.Namespace) -> dict[str, Any]:
    refresher = None
    if mode in CLIENT_MODES:
        refresher = Refresher(pid, cfg.refresh, first=cfg.refresh / 2)
        refresher.client.snapshot(limit=50)  # the hooks are in, the first snapshot done
    time.sleep(SETTLE)
    rss0, (main0, other0), cs0 = rss_mib(pid), thread_cpu_ns(pid), context_switches(pid)
    if mode == "refresh" and refresher is not None:
        refresher.start()
    requests = max(1, wrk(port, cfg.duration, cfg.connections))
    rss1, (main1, other1), cs1 = rss_mib(pid), thread_cpu_ns(pid), context_switches(pid)
    out: dict[str, Any] = {
        "rate": requests / cfg.duration,
        "cpu_per_request": (main1 - main0 + other1 - other0) / 1e9 / requests,
        "agent_threads_per_s": (other1 - other0) / 1e9 / cfg.duration,
        "rss_growth": rss1 - rss0,
        "switches_per_s": (cs1 - cs0) / cfg.duration,
    }
    if refresher is not None:
        if mode == "refresh":
            refresher.stop()  # the client leaves: the hooks come out before the next window
        else:
            refresher.client.close()
        out["snapshots"] = len(refresher.loop_times)
        out["loop_time"] = statistics.median(refresher.loop_times or [0.0])
    return out


def median_interval(
    values: list[float], rng: random.Random, n: int = 2000
) -> tuple[float, float, float]:
    """The median and a bootstrap 95 % interval of it."""
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(n))
    return statistics.median(values), medians[int(0.025 * n)], medians[int(0.975 * n) - 1]


def lower_quartile(values: list[float]) -> float:
    return statistics.quantiles(values, n=4)[0] if len(values) > 1 else values[0]


def bench_server(server: str, cfg: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    cmd = ["taskset", "-c", SERVER_CPU, cfg.python, "-m", "vmtop", "run", "-q", str(APP), server]
    with child(cmd, stdin=False) as (proc, err):
        ready = read_json(proc, err, server)
        pid, port = int(ready["pid"]), int(ready["port"])
        wait_listening(port)
        wrk(port, 2, cfg.connections)  # warm-up: imports, caches, first connections
        rounds: list[dict[str, dict[str, Any]]] = []
        for r in range(cfg.rounds):
            order = list(cfg.modes)
            rng.shuffle(order)
            rounds.append({mode: window(pid, port, mode, cfg) for mode in order})
            print(
                f"  {server} round {r + 1}: "
                + "  ".join(
                    f"{m} {rounds[-1][m]['cpu_per_request'] * 1e6:.1f} µs" for m in cfg.modes
                ),
                file=sys.stderr,
            )
    out: dict[str, Any] = {"rounds": rounds}
    base = [r["run"]["cpu_per_request"] for r in rounds]
    out["run_us"] = statistics.median(base) * 1e6
    out["run_rate"] = statistics.median(r["run"]["rate"] for r in rounds)
    for mode in cfg.modes:
        if mode == "run":
            continue
        cpus = [r[mode]["cpu_per_request"] for r in rounds]
        ratios = [b / c for b, c in zip(base, cpus, strict=True)]
        out[mode] = {
            "cpu": median_interval(ratios, rng),
            "quartile": lower_quartile(base) / lower_quartile(cpus),
            "rate": statistics.median(r[mode]["rate"] / r["run"]["rate"] for r in rounds),
            "agent_threads_per_s": statistics.median(
                r[mode]["agent_threads_per_s"] for r in rounds
            ),
            "rss_growth": statistics.median(r[mode]["rss_growth"] for r in rounds),
            "extra_switches_per_s": statistics.median(
                r[mode]["switches_per_s"] - r["run"]["switches_per_s"] for r in rounds
            ),
        }
        if mode == "refresh":
            out[mode]["loop_time"] = statistics.median(r[mode]["loop_time"] for r in rounds)
            out[mode]["snapshots"] = statistics.median(r[mode]["snapshots"] for r in rounds)
    return out


def markdown(cfg: argparse.Namespace, results: dict[str, Any], load: tuple[float, float]) -> str:
    lines = [
        f"`python benchmarks/bench_web_windows.py {' '.join(sys.argv[1:])}` — "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, Python {platform.python_version()}, "
        f"wrk -t1 -c{cfg.connections} -d{cfg.duration}s, {cfg.rounds} rounds, one server "
        f"process pinned to CPU {SERVER_CPU}, load average {load[0]} before / {load[1]} after",
        "",
        "Requests per server CPU-second, mode / no client: median of the per-round ratios "
        "[bootstrap 95 % interval]; lower-quartile ratio; requests/s ratio.",
        "",
        "| server | mode | no client: µs CPU / request | per CPU-s: median [95 %] | lower quartiles "
        "| req/s | agent threads (CPU ms/s) | snapshot loop time | context switches/s vs no client "
        "| RSS growth per window |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for server, r in results.items():
        for mode in cfg.modes:
            if mode == "run":
                continue
            m = r[mode]
            med, lo, hi = m["cpu"]
            loop = f"{m['loop_time'] * 1000:.2f} ms" if "loop_time" in m else "–"
            lines.append(
                f"| {server} | {mode} | {r['run_us']:.1f} | {med:.3f} [{lo:.3f}-{hi:.3f}] "
                f"| {m['quartile']:.3f} | {m['rate']:.3f} | {m['agent_threads_per_s'] * 1000:.2f} "
                f"| {loop} | {m['extra_switches_per_s']:+.0f} | {m['rss_growth']:+.1f} MiB |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--servers", type=lambda s: s.split(","), default=list(SERVERS))
    p.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES))
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--duration", type=int, default=2, help="seconds of load per window")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--refresh", type=float, default=1.0, help="seconds between snapshots")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--python", default=sys.executable)
    cfg = p.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise SystemExit("bench_web_windows: needs wrk and taskset (apt-get install wrk)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("bench_web_windows: needs 2 CPUs (one for the server, one for wrk)")
    bad = [s for s in cfg.servers if s not in SERVERS] + [m for m in cfg.modes if m not in MODES]
    if bad or cfg.rounds < 2 or cfg.duration < 1 or "run" not in cfg.modes:
        raise SystemExit(
            f"bench_web_windows: bad --servers/--modes/--rounds/--duration {bad or ''} "
            f"(modes: {','.join(MODES)}, 'run' among them; at least 2 rounds)"
        )
    os.sched_setaffinity(0, {int(LOAD_CPU)})  # the client's CPU is not the server's
    rng = random.Random(cfg.seed)
    load0 = loadavg()
    results = {s: bench_server(s, cfg, rng) for s in cfg.servers}
    print(markdown(cfg, results, (load0, loadavg())))


if __name__ == "__main__":
    main()
