"""What watching a web service costs it: wrk against real servers, with and without vmtop.

Servers (``tests/targets/web_app.py``): aiohttp, and Starlette under uvicorn on uvloop and on
the asyncio loop; one short task per request. Load: ``wrk -t1 -cC -dD`` on loopback against
``/item/2`` (a handler with two awaits). A Python load client on the same 2 CPUs could not
saturate the server and would hide our cost: wrk is required (``apt-get install wrk``).

Modes, run once each per round in a shuffled order (paired, interleaved; figures are the
medians over the rounds of the per-round ratios):

* ``plain``: the server alone;
* ``run``: under ``vmtop run`` (agent loaded, no client: nothing installed);
* ``idle``: a client attached (step hook, task factory, lag probe, GC watcher installed) that
  takes one snapshot before the window and none in it: the cost of the hooks;
* ``refresh``: a client refreshing a top-50 snapshot every second, as ``vmtop top`` does.

Per mode: requests/s, the server's RSS growth over the window (MiB), and for ``refresh`` the
loop time a snapshot held the loop (median) and the loop-lag p99 it saw.

``--instructions``: the same servers under callgrind (deterministic: no noise from other
processes, no pairing needed), ``plain`` and ``idle`` (a client attached, hooks and factory
in), N1 and N2 sequential requests each; instructions per request = the difference / (N2 -
N1). wrk's requests/s on a shared 2-CPU machine move by tens of per cent from one window to
the next; instruction counts do not.

Usage::

    python benchmarks/bench_web.py                   # all servers, 5 rounds of 5 s (~6 min)
    python benchmarks/bench_web.py --quick           # smoke run, same output shape
    python benchmarks/bench_web.py --servers aiohttp --rounds 9 --json out.json
    python benchmarks/bench_web.py --instructions    # callgrind, ~10 min
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
APP = REPO / "tests" / "targets" / "web_app.py"
SERVERS = ("aiohttp", "uvicorn-uvloop", "uvicorn-asyncio")
MODES = ("plain", "run", "idle", "refresh")

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench_agent import Refresher, child, loadavg, proc_cpu, read_json  # noqa: E402


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_listening(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench_web: nothing listens on port {port}") from None
            time.sleep(0.05)


def wrk(port: int, seconds: float, connections: int, path: str = "/item/2") -> float:
    """Requests/s that wrk completed (it exits by itself after ``seconds``)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise SystemExit(f"bench_web: wrk printed no rate:\n{out}")
    return float(match.group(1))


def once(server: str, mode: str, cfg: argparse.Namespace) -> dict[str, Any]:
    cmd = [cfg.python, str(APP), server]
    if mode != "plain":
        cmd = [cfg.python, "-m", "vmtop", "run", "-q", str(APP), server]
    with child(cmd, stdin=False) as (proc, err):
        ready = read_json(proc, err, f"{server} ({mode})")
        pid, port = int(ready["pid"]), int(ready["port"])
        wait_listening(port)  # uvicorn says it is ready before it binds
        wrk(port, 1, cfg.connections)  # warm-up: imports, caches, first connections
        refresher = None
        if mode in ("idle", "refresh"):
            refresher = Refresher(pid, cfg.refresh)
            refresher.client.snapshot(limit=50)  # the hooks are in, the first refresh done
            if mode == "refresh":
                refresher.start()
        rss0, cpu0 = rss_mib(pid), proc_cpu(pid)
        rate = wrk(port, cfg.duration, cfg.connections)
        rss1, cpu1 = rss_mib(pid), proc_cpu(pid)
        out: dict[str, Any] = {"rate": rate, "rss_growth": rss1 - rss0, "rss_end": rss1}
        # CPU-seconds of the server (all its threads) per request: what the watching costs
        # the server itself, much less moved by other processes than requests/s.
        out["cpu_per_request"] = (cpu1 - cpu0) / max(1.0, rate * cfg.duration)
        if refresher is not None:
            refresher._stop.set()  # the refreshing thread ends before this one asks
            if mode == "refresh":
                refresher._thread.join()
            snap = refresher.client.snapshot(limit=50)
            lags = [loop.lag_p99 for loop in snap.node.loops if loop.lag_p99 is not None]
            out["lag_p99"] = max(lags) if lags else None
            groups = sorted(snap.groups, key=lambda g: -(g.finished_total or 0))
            out["group"] = groups[0].coro if groups else None
            out["loop_time"] = statistics.median(refresher.loop_times or [0.0])
            out["cost"] = statistics.median(refresher.costs or [0.0])
            refresher.client.close()
        return out


def bench(cfg: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(cfg.seed)
    results: dict[str, Any] = {}
    for server in cfg.servers:
        rounds: list[dict[str, dict[str, Any]]] = []
        for r in range(cfg.rounds):
            order = list(MODES)
            rng.shuffle(order)
            rounds.append({mode: once(server, mode, cfg) for mode in order})
            print(
                f"  {server} round {r + 1}: "
                + "  ".join(f"{m} {rounds[-1][m]['rate']:.0f}/s" for m in MODES),
                file=sys.stderr,
            )
        results[server] = summarise(rounds)
    return results


def med(values: list[float]) -> float:
    return statistics.median(values)


def summarise(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds}
    for mode in MODES:
        out[f"{mode}_rate"] = med([r[mode]["rate"] for r in rounds])
        out[f"{mode}_rss_growth"] = med([r[mode]["rss_growth"] for r in rounds])
        out[f"{mode}_cpu_per_request"] = med([r[mode]["cpu_per_request"] for r in rounds])
        if mode != "plain":
            out[f"{mode}/plain"] = med([r[mode]["rate"] / r["plain"]["rate"] for r in rounds])
            out[f"{mode}/plain cpu"] = med(
                [r["plain"]["cpu_per_request"] / r[mode]["cpu_per_request"] for r in rounds]
            )
    out["refresh/run"] = med([r["refresh"]["rate"] / r["run"]["rate"] for r in rounds])
    out["loop_time"] = med([r["refresh"]["loop_time"] for r in rounds])
    out["cost"] = med([r["refresh"]["cost"] for r in rounds])
    for mode, key in (("refresh", "lag_p99"), ("idle", "lag_p99_idle")):
        lags = [r[mode]["lag_p99"] for r in rounds if r[mode].get("lag_p99") is not None]
        out[key] = med(lags) if lags else None
    out["group"] = rounds[-1]["refresh"].get("group")
    return out


def markdown(cfg: argparse.Namespace, results: dict[str, Any]) -> str:
    lines = [
        f"`python benchmarks/bench_web.py {' '.join(sys.argv[1:])}` — "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, Python {platform.python_version()}, "
        f"wrk -t1 -c{cfg.connections} -d{cfg.duration:g}s, {cfg.rounds} rounds, "
        f"load average {loadavg()}",
        "",
        "Throughput as requests/s ratios, and as requests per server CPU-second ratios "
        "(in brackets: plain CPU per request / mode's CPU per request).",
        "",
        "| server | plain req/s | run / plain | idle / plain | refresh / plain | "
        "refresh / run | RSS growth plain / refresh (MiB) | snapshot cost (loop time) | "
        "lag p99 idle / refresh |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for server, r in results.items():
        lag = " / ".join(
            f"{r[k] * 1000:.1f} ms" if r.get(k) is not None else "–"
            for k in ("lag_p99_idle", "lag_p99")
        )
        lines.append(
            f"| {server} | {r['plain_rate']:,.0f}"
            f" | {r['run/plain']:.3f} [{r['run/plain cpu']:.3f}]"
            f" | {r['idle/plain']:.3f} [{r['idle/plain cpu']:.3f}]"
            f" | {r['refresh/plain']:.3f} [{r['refresh/plain cpu']:.3f}]"
            f" | {r['refresh/run']:.3f}"
            f" | {r['plain_rss_growth']:+.1f} / {r['refresh_rss_growth']:+.1f}"
            f" | {r['cost'] * 1000:.2f} ms ({r['loop_time'] * 1000:.2f} ms) | {lag} |"
        )
    lines.append("")
    lines.append(
        "Top group while refreshing: "
        + ", ".join(f"{s}: `{r['group']}`" for s, r in results.items())
    )
    return "\n".join(lines)


def callgrind_once(server: str, mode: str, requests: int, cfg: argparse.Namespace) -> int:
    """Instructions the server ran from start to exit, ``requests`` requests on the way."""
    inner = [cfg.python, str(APP), server]
    if mode != "plain":
        inner = [cfg.python, "-m", "vmtop", "run", "-q", str(APP), server]
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *inner]
    with child(cmd, stdin=False, grace=120) as (proc, err):
        ready = read_json(proc, err, f"{server} ({mode}) under callgrind")
        pid, port = int(ready["pid"]), int(ready["port"])
        wait_listening(port, timeout=120)
        client = None
        if mode == "idle":
            from vmtop.client import AgentClient

            client = AgentClient(pid, timeout=120).connect()
            client.snapshot(limit=50)
        sequential_load(cfg.python, port, requests)
        if client is not None:
            client.close()
        return callgrind_total(proc, err)


def sequential_load(python: str, port: int, requests: int) -> None:
    """``requests`` requests to ``/item/2``, one after the other on one keep-alive connection."""
    subprocess.run(
        [python, str(REPO / "benchmarks" / "workloads" / "http_load.py"), str(port)]
        + ["--connections", "1", "--requests", str(requests), "--duration", "600"]
        + ["--path", "/item/2"],
        check=True,
        capture_output=True,
        timeout=900,
    )


def callgrind_total(proc: subprocess.Popen[str], err: IO[str]) -> int:
    """Stop a server running under callgrind (SIGINT) and read the instructions it counted."""
    proc.send_signal(signal.SIGINT)
    proc.wait(300)
    err.seek(0)
    text = err.read()
    match = re.search(r"Collected : (\d+)", text)
    if not match:
        raise SystemExit(f"callgrind printed no total:\n{text[-2000:]}")
    return int(match.group(1))


def instructions(cfg: argparse.Namespace) -> dict[str, Any]:
    small, large = cfg.requests
    out: dict[str, Any] = {}
    for server in cfg.servers:
        per: dict[str, float] = {}
        for mode in ("plain", "run", "idle"):
            a = callgrind_once(server, mode, small, cfg)
            b = callgrind_once(server, mode, large, cfg)
            per[mode] = (b - a) / (large - small)
            print(f"  {server} {mode}: {per[mode]:,.0f} instructions/request", file=sys.stderr)
        out[server] = {
            **per,
            "run/plain": per["run"] / per["plain"],
            "idle/plain": per["idle"] / per["plain"],
            "idle/run": per["idle"] / per["run"],
        }
    return out


def instructions_markdown(cfg: argparse.Namespace, results: dict[str, Any]) -> str:
    small, large = cfg.requests
    lines = [
        f"`python benchmarks/bench_web.py {' '.join(sys.argv[1:])}` — "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, Python {platform.python_version()}, "
        f"callgrind, {small} and {large} sequential requests to /item/2",
        "",
        "| server | plain | run (agent, no client) | attached (hooks, factory) | run / plain "
        "| attached / plain | attached / run |",
        "|---|---|---|---|---|---|---|",
    ]
    for server, r in results.items():
        lines.append(
            f"| {server} | {r['plain']:,.0f} | {r['run']:,.0f} | {r['idle']:,.0f}"
            f" | {r['run/plain']:.4f} | {r['idle/plain']:.4f} | {r['idle/run']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--servers", type=lambda s: s.split(","), default=list(SERVERS))
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--duration", type=int, default=None, help="seconds of load per window")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--refresh", type=float, default=1.0, help="seconds between snapshots")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--json", type=Path)
    p.add_argument("--instructions", action="store_true", help="count with callgrind instead")
    p.add_argument("--requests", type=lambda s: [int(x) for x in s.split(",")], default=[500, 2500])
    cfg = p.parse_args()
    if cfg.instructions:
        if shutil.which("valgrind") is None:
            raise SystemExit("bench_web: valgrind not found (apt-get install valgrind)")
        found = instructions(cfg)
        print(instructions_markdown(cfg, found))
        if cfg.json:
            cfg.json.write_text(json.dumps(found, indent=1))
        return
    if shutil.which("wrk") is None:
        raise SystemExit("bench_web: wrk not found (apt-get install wrk)")
    cfg.rounds = cfg.rounds or (1 if cfg.quick else 5)
    cfg.duration = cfg.duration or (1 if cfg.quick else 5)
    bad = [s for s in cfg.servers if s not in SERVERS]
    if bad:
        raise SystemExit(f"bench_web: unknown server {bad[0]!r} (one of {', '.join(SERVERS)})")
    results = bench(cfg)
    print(markdown(cfg, results))
    if cfg.json:
        cfg.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
