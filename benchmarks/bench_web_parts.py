"""Where the attached cost of a web service goes: one part of an attach at a time.

``bench_web.py`` measures a whole attach (5-7 % more server CPU per request on aiohttp and
uvicorn, 2026-12-03). This benchmark installs the parts one by one in-process
(``workloads/web_parts.py``: step hook, task factory, lag probe, GC watcher, dequeue hooks,
all of them) and also runs the real thing (``run``: under ``vmtop run`` with no client;
``client``: a client connected and silent), so each per cent has an owner.

Two measures:

* default, ``--instructions``: callgrind with instrumentation switched on
  (``callgrind_control -i on``) only for ``--requests`` sequential keep-alive requests after
  a warm-up; deterministic for the code that runs per request. Timers run at wall-clock
  rates while the server runs ~50x slower under valgrind, so the lag probe's share is
  inflated by that factor (its ticks are counted and shown);
* ``--wrk``: wrk load, server CPU-seconds per request, modes interleaved in shuffled rounds;
  ratio to ``none`` per round, median over rounds.

Usage::

    python benchmarks/bench_web_parts.py --servers aiohttp               # callgrind, ~6 min
    python benchmarks/bench_web_parts.py --wrk --rounds 7 --servers aiohttp
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PARTS_APP = HERE / "workloads" / "web_parts.py"
APP = REPO / "tests" / "targets" / "web_app.py"
MODES = ("none", "steps", "factory", "lag", "gc", "mailbox", "attach", "run", "hello", "client")

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench_agent import child, loadavg, proc_cpu, read_json  # noqa: E402
from bench_web import callgrind_total, sequential_load, wait_listening, wrk  # noqa: E402


def command(python: str, server: str, mode: str) -> list[str]:
    if mode in ("run", "hello", "client"):
        return [python, "-m", "vmtop", "run", "-q", str(APP), server]
    parts = {"factory": "steps,factory"}.get(mode, mode)
    return [python, str(PARTS_APP), server, parts]


def callgrind(server: str, mode: str, cfg: argparse.Namespace) -> int:
    """Instructions the server ran while ``cfg.requests`` requests were served."""
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--callgrind-out-file=/dev/null",
        *command(cfg.python, server, mode),
    ]
    with child(cmd, stdin=False, grace=120) as (proc, err):
        ready = read_json(proc, err, f"{server} ({mode}) under callgrind")
        pid, port = int(ready["pid"]), int(ready["port"])
        wait_listening(port, timeout=120)
        client = None
        if mode in ("hello", "client"):
            from vmtop.client import AgentClient

            client = AgentClient(pid, timeout=120).connect()
            if mode == "client":
                client.snapshot(limit=50)
        sequential_load(cfg.python, port, 200)  # warm-up: imports, caches, the first connection
        subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True)
        sequential_load(cfg.python, port, cfg.requests)
        subprocess.run(
            ["callgrind_control", "-i", "off", str(pid)], check=True, capture_output=True
        )
        if client is not None:
            client.close()
        return callgrind_total(proc, err)


def wrk_once(server: str, mode: str, cfg: argparse.Namespace) -> float:
    """Server CPU-seconds per request under wrk."""
    with child(command(cfg.python, server, mode), stdin=False) as (proc, err):
        ready = read_json(proc, err, f"{server} ({mode})")
        pid, port = int(ready["pid"]), int(ready["port"])
        wait_listening(port)
        client = None
        if mode == "client":
            from vmtop.client import AgentClient

            client = AgentClient(pid, timeout=30).connect()
            client.snapshot(limit=50)
        wrk(port, 1, cfg.connections)
        cpu0 = proc_cpu(pid)
        rate = wrk(port, cfg.duration, cfg.connections)
        cpu1 = proc_cpu(pid)
        if client is not None:
            client.close()
        return (cpu1 - cpu0) / max(1.0, rate * cfg.duration)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--servers", type=lambda s: s.split(","), default=["aiohttp"])
    p.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES))
    p.add_argument("--wrk", action="store_true", help="wrk CPU per request instead of callgrind")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=4)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path)
    cfg = p.parse_args()
    bad = set(cfg.modes) - set(MODES)
    if bad or "none" not in cfg.modes:
        raise SystemExit(f"bench_web_parts: modes must include none, from {MODES}")
    if not cfg.wrk:
        os.environ.setdefault("PYTHONHASHSEED", "0")  # the same dict layouts run to run
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M"), "load": [loadavg()]}
    for server in cfg.servers:
        per: dict[str, Any] = {}
        if not cfg.wrk:
            for mode in cfg.modes:
                n = callgrind(server, mode, cfg)
                per[mode] = n / cfg.requests
                print(f"  {server} {mode}: {per[mode]:,.0f} instructions/request", file=sys.stderr)
            base = per["none"]
            results[server] = {m: {"per_request": v, "ratio": v / base} for m, v in per.items()}
        else:
            rng = random.Random(cfg.seed)
            rounds: list[dict[str, float]] = []
            for r in range(cfg.rounds):
                order = list(cfg.modes)
                rng.shuffle(order)
                got = {m: wrk_once(server, m, cfg) for m in order}
                rounds.append(got)
                print(
                    f"  {server} round {r + 1}: "
                    + ", ".join(f"{m} {got[m] / got['none']:.3f}" for m in cfg.modes),
                    file=sys.stderr,
                )
            results[server] = {
                m: {
                    "per_request": statistics.median(x[m] for x in rounds),
                    "ratio": statistics.median(x[m] / x["none"] for x in rounds),
                }
                for m in cfg.modes
            }
        results["load"].append(loadavg())
    print(markdown(cfg, results))
    if cfg.json:
        cfg.json.write_text(json.dumps(results, indent=1))


def markdown(cfg: argparse.Namespace, results: dict[str, Any]) -> str:
    unit = "server CPU µs/request" if cfg.wrk else "instructions/request"
    lines = [
        f"`python benchmarks/bench_web_parts.py {' '.join(sys.argv[1:])}` — "
        f"{results['started']}, load average {results['load']}",
        "",
        f"| server | mode | {unit} | / none |",
        "|---|---|---|---|",
    ]
    for server in cfg.servers:
        for mode, v in results[server].items():
            x = v["per_request"] * (1e6 if cfg.wrk else 1)
            lines.append(f"| {server} | {mode} | {x:,.1f} | {v['ratio']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
