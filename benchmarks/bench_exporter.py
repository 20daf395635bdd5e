"""What Prometheus scraping costs a watched service: wrk throughput, scraped every second by
``vmtop exporter`` vs not watched at all.

Servers, each under ``vmtop run`` in both modes (so the only difference is the exporter):

* ``uvicorn``: ``tests/targets/uvicorn_app.py`` (Starlette) under uvicorn, one worker, its
  default loop (uvloop where installed), access log off;
* ``streams``: ``benchmarks/workloads/http_server.py`` (asyncio streams, keep-alive).

Modes, once each per round in a shuffled order (paired and interleaved; the figure is the
median over the rounds of the per-round ratio):

* ``unwatched``: no client;
* ``attached``: ``vmtop exporter PID`` connected and scraped once before the window, none in
  it: what holding the agent's hooks in costs (the exporter keeps its connection, so that its
  counters run and the lag probe and GC watcher stay on);
* ``scraped``: the same, and a scraper in this process fetching ``/metrics`` every second
  through the window, as Prometheus with ``scrape_interval: 1s`` would. The exporter runs on
  the same 2 CPUs, so its own CPU is part of the cost.

Each mode's figures: requests/s (wrk) and requests per CPU-second of the server process.

Then, per server, what one scrape costs the target, apart from the noise of throughput ratios:
``--burst`` scrapes back to back while wrk loads the server; the CPU its agent's threads took
per scrape (``/proc/PID/task``: every thread but the loop's), and the loop time each snapshot
held the loop (``vmtop_snapshot_loop_seconds``).

Load: ``wrk -t1 -cC -dD`` on loopback (``apt-get install wrk``): a Python load generator on
the same CPUs could not saturate the server and would hide the cost.

Usage::

    python benchmarks/bench_exporter.py                  # both servers, 7 rounds of 5 s
    python benchmarks/bench_exporter.py --quick          # smoke run, same output shape
    python benchmarks/bench_exporter.py --servers uvicorn --rounds 9 --json out.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
APPS = REPO / "tests" / "targets"
SERVERS = ("uvicorn", "streams")
MODES = ("unwatched", "attached", "scraped")

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench_agent import env, loadavg, proc_cpu, thread_cpu  # noqa: E402
from bench_web import wrk as wrk_path  # noqa: E402


def wrk(port: int, seconds: float, connections: int) -> float:
    """Requests/s that wrk completed against the server's ``/``."""
    return wrk_path(port, seconds, connections, path="/")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()  # vmtop run and the exporter both end cleanly on SIGTERM/SIGINT
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def server(name: str, python: str) -> Iterator[tuple[int, int]]:
    """``(pid, port)`` of a server under ``vmtop run``, ready for requests."""
    if name == "uvicorn":
        port = free_port()
        cmd = [python, "-m", "vmtop", "run", "-q", "-m", "uvicorn", "uvicorn_app:app",
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=APPS, env=env(), stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:  # blocking: uvicorn logs this line once it listens
            if "Uvicorn running on" in line:  # listening (startup runs before the bind)
                break
        else:
            raise SystemExit(f"bench_exporter: uvicorn exited ({proc.wait()})")
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # never blocks it
    else:
        script = str(HERE / "workloads" / "http_server.py")
        cmd = [python, "-m", "vmtop", "run", "-q", script, "--port", "0"]
        proc = subprocess.Popen(
            cmd, env=env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        port = int(json.loads(proc.stdout.readline())["port"])
    try:
        yield proc.pid, port
    finally:
        _stop(proc)


class Scraper:
    """``vmtop exporter PID`` and a thread fetching its /metrics every ``every`` seconds."""

    def __init__(self, pid: int, python: str, every: float) -> None:
        cmd = [python, "-m", "vmtop", "exporter", str(pid), "--listen", "127.0.0.1:0"]
        self.proc = subprocess.Popen(cmd, env=env(), stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        match = re.search(r"serving (\S+)", line)
        if not match:
            raise SystemExit(f"bench_exporter: exporter said {line!r}")
        self.url = match.group(1)
        self.every = every
        self.seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def scrape(self) -> None:
        t0 = time.perf_counter()
        with urllib.request.urlopen(self.url, timeout=10) as r:
            r.read()
        self.seconds.append(time.perf_counter() - t0)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.scrape()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        _stop(self.proc)


def once(name: str, mode: str, cfg: argparse.Namespace) -> dict[str, Any]:
    with server(name, cfg.python) as (pid, port):
        wrk(port, 1, cfg.connections)  # warm-up: imports, caches, first connections
        scraper = Scraper(pid, cfg.python, cfg.every) if mode != "unwatched" else None
        try:
            if scraper is not None:
                scraper.scrape()  # connected, hooks in, first snapshot taken
                if mode == "scraped":
                    scraper.start()
                exporter0 = proc_cpu(scraper.proc.pid)
            server0 = proc_cpu(pid)
            rate = wrk(port, cfg.duration, cfg.connections)
            cpu = proc_cpu(pid) - server0
            out: dict[str, Any] = {"rate": rate, "per_cpu": rate * cfg.duration / cpu}
            if scraper is not None:
                out["exporter_cpu"] = proc_cpu(scraper.proc.pid) - exporter0
                out["scrapes"] = len(scraper.seconds) - 1
                out["scrape_ms"] = 1000 * statistics.median(scraper.seconds[1:] or [0.0])
            return out
        finally:
            if scraper is not None:
                scraper.stop()


def burst(name: str, cfg: argparse.Namespace) -> dict[str, float]:
    """Agent CPU and loop time per scrape, ``cfg.burst`` scrapes back to back under load."""
    with server(name, cfg.python) as (pid, port):
        scraper = Scraper(pid, cfg.python, cfg.every)
        try:
            scraper.scrape()
            load = subprocess.Popen(
                ["wrk", "-t1", f"-c{cfg.connections}", f"-d{int(cfg.duration) + 5}s",
                 f"http://127.0.0.1:{port}/"],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            wrk(port, 1, cfg.connections)  # the load is on (this one ends after 1 s)
            _, agent0 = thread_cpu(pid)
            loop_held = []
            for _ in range(cfg.burst):
                with urllib.request.urlopen(scraper.url, timeout=10) as r:
                    text = r.read().decode()
                m = re.search(r"^vmtop_snapshot_loop_seconds\{[^}]*\} (\S+)$", text, re.M)
                loop_held.append(float(m.group(1)) if m else float("nan"))
            _, agent1 = thread_cpu(pid)
            load.wait()
        finally:
            scraper.stop()
    return {
        "agent_cpu_ms": 1000 * (agent1 - agent0) / cfg.burst,
        "loop_ms": 1000 * statistics.median(loop_held),
    }


RATIOS = (("scraped", "unwatched"), ("attached", "unwatched"), ("scraped", "attached"))


def bench(cfg: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(cfg.seed)
    results: dict[str, Any] = {}
    for name in cfg.servers:
        rounds: list[dict[str, dict[str, Any]]] = []
        for r in range(cfg.rounds):
            order = list(MODES)
            rng.shuffle(order)
            got = {mode: once(name, mode, cfg) for mode in order}
            rounds.append(got)
            print(
                f"  {name} round {r + 1}: "
                + "  ".join(
                    f"{m} {got[m]['rate']:.0f}/s {got[m]['per_cpu']:.0f}/cpu-s" for m in MODES
                ),
                file=sys.stderr,
            )
        results[name] = summarise(rounds)
        results[name]["burst"] = burst(name, cfg)
    return results


def summarise(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    def med(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    out: dict[str, Any] = {
        mode: {k: statistics.median(r[mode][k] for r in rounds) for k in ("rate", "per_cpu")}
        for mode in MODES
    }
    for a, b in RATIOS:
        for k in ("rate", "per_cpu"):
            out[f"{a}/{b} {k}"] = med([r[a][k] / r[b][k] for r in rounds])
    scraped = [r["scraped"] for r in rounds]
    out["scrapes"] = statistics.median(s["scrapes"] for s in scraped)
    out["scrape_ms"] = statistics.median(s["scrape_ms"] for s in scraped)
    out["exporter_cpu_share"] = statistics.median(s["exporter_cpu"] for s in scraped)
    return out


def fmt(r: dict[str, float]) -> str:
    return f"{r['median']:.3f} ({r['min']:.3f}-{r['max']:.3f})"


def markdown(cfg: argparse.Namespace, results: dict[str, Any]) -> str:
    lines = [
        f"wrk -t1 -c{cfg.connections} -d{cfg.duration:g}s, scraped every {cfg.every:g} s, "
        f"{cfg.rounds} rounds; {platform.python_implementation()} {platform.python_version()}, "
        f"load average {loadavg()} at the end, {datetime.date.today()}",
        "",
        "| server | figure | unwatched | attached | scraped | scraped / unwatched "
        "| attached / unwatched | scraped / attached |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for k, label in (("rate", "requests/s"), ("per_cpu", "requests per server CPU-s")):
            lines.append(
                f"| {name} | {label} | {r['unwatched'][k]:.0f} | {r['attached'][k]:.0f} "
                f"| {r['scraped'][k]:.0f} | **{fmt(r[f'scraped/unwatched {k}'])}** "
                f"| {fmt(r[f'attached/unwatched {k}'])} | {fmt(r[f'scraped/attached {k}'])} |"
            )
    lines.append("")
    for name, r in results.items():
        lines.append(
            f"- {name}: {r['scrapes']:.0f} scrapes per window, {r['scrape_ms']:.1f} ms each "
            f"(median, as the scraper saw it), exporter CPU "
            f"{1000 * r['exporter_cpu_share'] / cfg.duration:.0f} ms/s; per scrape under load "
            f"({cfg.burst} back to back): the target's agent threads "
            f"{r['burst']['agent_cpu_ms']:.2f} ms of CPU, its loop held "
            f"{r['burst']['loop_ms']:.2f} ms (median)"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--every", type=float, default=1.0, help="seconds between scrapes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--burst", type=int, default=200, help="scrapes back to back for the cost")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--quick", action="store_true", help="2 rounds of 2 s")
    p.add_argument("--json", metavar="PATH")
    cfg = p.parse_args()
    cfg.servers = [s for s in cfg.servers.split(",") if s]
    if bad := set(cfg.servers) - set(SERVERS):
        raise SystemExit(f"bench_exporter: unknown servers {sorted(bad)}; pick from {SERVERS}")
    if cfg.quick:
        cfg.rounds, cfg.duration, cfg.burst = 2, 2.0, 20
    if shutil.which("wrk") is None:
        raise SystemExit("bench_exporter: wrk not found (apt-get install wrk)")
    results = bench(cfg)
    print(markdown(cfg, results))
    if cfg.json:
        with suppress(OSError), open(cfg.json, "w") as f:
            json.dump({"config": vars(cfg), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
