"""What Prometheus scraping costs a watched service: wrk throughput, scraped every second by
``vmtop exporter`` vs not watched at all.

Servers, each under ``vmtop run`` in both modes (so the only difference is the exporter):

* ``uvicorn``: ``tests/targets/uvicorn_app.py`` (Starlette) under uvicorn, one worker, its
  default loop (uvloop where installed), access log off;
* ``streams``: ``benchmarks/workloads/http_server.py`` (asyncio streams, keep-alive).

Modes, once each per round in a shuffled order (paired and interleaved; the figure is the
median over the rounds of the per-round ratio):

* ``unwatched``: no client;
* ``scraped``: ``vmtop exporter PID`` connected (one scrape before the window, so the hooks are
  in), and a scraper in this process fetching ``/metrics`` every second through the window, as
  Prometheus with ``scrape_interval: 1s`` would. The exporter runs on the same 2 CPUs, so its
  own CPU is part of the cost.

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
MODES = ("unwatched", "scraped")

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench_agent import env, loadavg, proc_cpu  # noqa: E402


def wrk(port: int, seconds: float, connections: int) -> float:
    """Requests/s that wrk completed (it exits by itself after ``seconds``)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise SystemExit(f"bench_exporter: wrk printed no rate:\n{out}")
    return float(match.group(1))


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
        self._thread.join()
        _stop(self.proc)


def once(name: str, mode: str, cfg: argparse.Namespace) -> dict[str, Any]:
    with server(name, cfg.python) as (pid, port):
        wrk(port, 1, cfg.connections)  # warm-up: imports, caches, first connections
        scraper = None
        if mode == "scraped":
            scraper = Scraper(pid, cfg.python, cfg.every)
            scraper.scrape()  # connected, hooks in, first snapshot taken
            scraper.start()
            cpu0 = proc_cpu(scraper.proc.pid)
        rate = wrk(port, cfg.duration, cfg.connections)
        out: dict[str, Any] = {"rate": rate}
        if scraper is not None:
            out["exporter_cpu"] = proc_cpu(scraper.proc.pid) - cpu0
            out["scrapes"] = len(scraper.seconds) - 1
            out["scrape_ms"] = 1000 * statistics.median(scraper.seconds[1:] or [0.0])
            scraper.stop()
        return out


def bench(cfg: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(cfg.seed)
    results: dict[str, Any] = {}
    for name in cfg.servers:
        ratios, rates, scrapes, cpu, ms = [], {m: [] for m in MODES}, [], [], []  # type: ignore[var-annotated]
        for r in range(cfg.rounds):
            order = list(MODES)
            rng.shuffle(order)
            got = {mode: once(name, mode, cfg) for mode in order}
            for mode in MODES:
                rates[mode].append(got[mode]["rate"])
            ratios.append(got["scraped"]["rate"] / got["unwatched"]["rate"])
            scrapes.append(got["scraped"]["scrapes"])
            cpu.append(got["scraped"]["exporter_cpu"])
            ms.append(got["scraped"]["scrape_ms"])
            print(
                f"  {name} round {r + 1}: unwatched {got['unwatched']['rate']:.0f}/s  "
                f"scraped {got['scraped']['rate']:.0f}/s  ratio {ratios[-1]:.3f}",
                file=sys.stderr,
            )
        results[name] = {
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "ratios": ratios,
            "rates": {m: statistics.median(v) for m, v in rates.items()},
            "scrapes_per_window": statistics.median(scrapes),
            "exporter_cpu_share": statistics.median(cpu) / cfg.duration,
            "scrape_ms": statistics.median(ms),
        }
    return results


def markdown(cfg: argparse.Namespace, results: dict[str, Any]) -> str:
    lines = [
        f"wrk -t1 -c{cfg.connections} -d{cfg.duration:g}s, scraped every {cfg.every:g} s, "
        f"{cfg.rounds} rounds; {platform.python_implementation()} {platform.python_version()}, "
        f"load average {loadavg()} at the end, {datetime.date.today()}",
        "",
        "| server | unwatched req/s | scraped req/s | scraped / unwatched (median, min-max) "
        "| scrapes per window | scrape (ms) | exporter CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['rates']['unwatched']:.0f} | {r['rates']['scraped']:.0f} "
            f"| **{r['ratio_median']:.3f}** ({r['ratio_min']:.3f}-{r['ratio_max']:.3f}) "
            f"| {r['scrapes_per_window']:.0f} | {r['scrape_ms']:.1f} "
            f"| {100 * r['exporter_cpu_share']:.1f} % of a CPU |"
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
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--quick", action="store_true", help="2 rounds of 2 s")
    p.add_argument("--json", metavar="PATH")
    cfg = p.parse_args()
    cfg.servers = [s for s in cfg.servers.split(",") if s]
    if bad := set(cfg.servers) - set(SERVERS):
        raise SystemExit(f"bench_exporter: unknown servers {sorted(bad)}; pick from {SERVERS}")
    if cfg.quick:
        cfg.rounds, cfg.duration = 2, 2.0
    if shutil.which("wrk") is None:
        raise SystemExit("bench_exporter: wrk not found (apt-get install wrk)")
    results = bench(cfg)
    print(markdown(cfg, results))
    if cfg.json:
        with suppress(OSError), open(cfg.json, "w") as f:
            json.dump({"config": vars(cfg), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
