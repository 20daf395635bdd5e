"""Where a watched web service's instructions go at saturation, function by function.

``bench_web.py --instructions`` and ``bench_web_parts.py`` count a server's instructions under
callgrind with one request at a time. Under wrk the loop is saturated instead (32
connections, many requests per loop iteration), which is what ``bench_web.py``'s wrk figures
see. Here each server runs under callgrind from start to exit while wrk (pinned to CPU 0;
the server to CPU 1) loads it for a short and a long window; the difference between the two
runs, divided by the difference in requests, is the cost per request with start-up and
shut-down cancelled out. Modes: ``none`` (under ``vmtop run``, no client) and ``client`` (a
client attached that took one snapshot and stays silent: the step hook, the task factory, the
lag probe and the GC watcher in).

Printed per server: instructions per request in each mode; the instructions per request of
vmtop's own functions (the C hooks, the registry, the counting proxy, the weak references
they make, the GC watcher's callback); and those of the cyclic GC in each mode, which at
saturation moves by several per cent of the total from one run to the next (how many full
collections land in a window, and how many pending requests each one walks), whichever the
mode: it is what makes the whole-run ratio noisy, not a cost of vmtop.

Usage::

    python benchmarks/bench_web_saturated.py --servers uvicorn-uvloop --durations 20,80

Needs valgrind, wrk and 2 CPUs; about 6 minutes per server with the default durations.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_agent import child, loadavg, read_json  # noqa: E402
from bench_web import APP, SERVERS, wait_listening  # noqa: E402

MODES = ("none", "client")
OURS = ("vmtop/agent/", "weakrefobject.c", "invoke_gc_callback", "gcwatch.py")
GC = ("gcmodule.c:gc_collect", "visit_reachable", "visit_decref", "_traverse", "Traverse")


def run_once(server: str, mode: str, seconds: int, out: Path, python: str) -> int:
    """One server run under callgrind with ``seconds`` of wrk load; the requests served."""
    cmd = ["taskset", "-c", "1", "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    cmd += [python, "-m", "vmtop", "run", "-q", str(APP), server]
    with child(cmd, stdin=False, grace=300) as (proc, err):
        ready = read_json(proc, err, f"{server} under callgrind")
        pid, port = int(ready["pid"]), int(ready["port"])
        wait_listening(port, timeout=120)
        client = None
        if mode == "client":
            from vmtop.client import AgentClient

            client = AgentClient(pid, timeout=120).connect()
            client.snapshot(limit=50)
        text = subprocess.run(
            ["taskset", "-c", "0", "wrk", "-t1", "-c32", f"-d{seconds}s", "--timeout", "30s"]
            + [f"http://127.0.0.1:{port}/item/2"],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
        ).stdout
        match = re.search(r"(\d+) requests in", text)
        if not match:
            raise SystemExit(f"bench_web_saturated: wrk printed no count:\n{text}")
        if client is not None:
            client.close()
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        proc.wait(300)
        return int(match.group(1))


def functions(path: Path) -> collections.Counter[str]:
    """Self instructions per function of one callgrind output."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    costs: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(\S+)", line)
        if match and "PROGRAM" not in line:
            costs[match.group(2)] += int(match.group(1).replace(",", ""))
    return costs


def per_request(short: tuple[int, Path], long: tuple[int, Path]) -> dict[str, float]:
    (n1, p1), (n2, p2) = short, long
    a, b = functions(p1), functions(p2)
    return {k: (b[k] - a[k]) / (n2 - n1) for k in set(a) | set(b)}


def summarise(per: dict[str, dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in MODES:
        costs = per[mode]
        out[mode] = {
            "total": sum(costs.values()),
            "gc": sum(v for k, v in costs.items() if any(g in k for g in GC)),
        }
    ours = {
        k: per["client"].get(k, 0.0) - per["none"].get(k, 0.0)
        for k in set(per["client"]) | set(per["none"])
        if any(o in k for o in OURS)
    }
    out["ours"] = sum(ours.values())
    out["ours_top"] = sorted(ours.items(), key=lambda kv: -kv[1])[:8]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--servers", type=lambda s: s.split(","), default=list(SERVERS))
    p.add_argument("--durations", default="20,80", help="short,long seconds of wrk load")
    p.add_argument("--python", default=sys.executable)
    cfg = p.parse_args()
    for tool in ("valgrind", "callgrind_annotate", "wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench_web_saturated: {tool} not found")
    try:
        short, long = (int(x) for x in cfg.durations.split(","))
    except ValueError:
        raise SystemExit("bench_web_saturated: --durations takes two seconds, e.g. 20,80") from None
    bad = [s for s in cfg.servers if s not in SERVERS]
    if bad or not 0 < short < long:
        raise SystemExit(f"bench_web_saturated: bad --servers/--durations {bad or ''}")
    load0 = loadavg()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for server in cfg.servers:
            per = {}
            for mode in MODES:
                runs = []
                for seconds in (short, long):
                    out = Path(tmp) / f"{server}-{mode}-{seconds}.cg"
                    runs.append((run_once(server, mode, seconds, out, cfg.python), out))
                    print(f"  {server} {mode} {seconds}s: {runs[-1][0]} requests", file=sys.stderr)
                per[mode] = per_request(runs[0], runs[1])
            results[server] = summarise(per)
    print(
        f"`python benchmarks/bench_web_saturated.py {' '.join(sys.argv[1:])}` — "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, Python {platform.python_version()}, "
        f"wrk -t1 -c32, {short} s and {long} s runs, load average {load0} / {loadavg()}\n"
    )
    print(
        "| server | instructions / request, no client | silent client | ratio "
        "| vmtop's own functions | share | GC, no client / client |"
    )
    print("|---|---|---|---|---|---|---|")
    for server, r in results.items():
        none, client = r["none"], r["client"]
        print(
            f"| {server} | {none['total']:,.0f} | {client['total']:,.0f}"
            f" | {client['total'] / none['total']:.3f} | {r['ours']:,.0f}"
            f" | {r['ours'] / none['total'] * 100:.2f} % | {none['gc']:,.0f} / {client['gc']:,.0f} |"
        )
    for server, r in results.items():
        top = ", ".join(f"{k.rsplit(':', 1)[-1]} {v:,.0f}" for k, v in r["ours_top"])
        print(f"\n{server}, vmtop's functions per request: {top}")


if __name__ == "__main__":
    main()
