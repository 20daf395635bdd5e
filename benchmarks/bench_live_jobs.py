"""What a live profile costs the target: sampler overhead and the allocation-snapshot pause.

1. Throughput while sampled at 100 Hz. A target under ``python -m vmtop run`` does pure-Python
   work and counts it; a client stays attached in both arms (so the agent's step hook costs the
   same in both). Each round measures a window without a job and a window with a ``sample``
   job running, in alternating order; the ratio with/without of each round is kept, and the
   table gives the median (min-max). Two workloads: ``loop`` (an asyncio task in ~50 µs steps,
   the case the sampler's lowered GIL switch interval is for) and ``threads`` (two CPU-bound
   threads, where that interval makes them switch more often). The achieved sample rate is the
   sampler's own count.
2. Allocation snapshot of ~1M traces. The target traces with tracemalloc (1 frame) and holds
   1M small objects; an ``allocations`` job snapshots, encodes and ships them. Reported: the
   ``take_snapshot()`` time in the target (the GIL is held: the program's pause), the longest
   stall of the target's event loop during the whole job (measured by a 1 ms ticker in the
   target), the payload size, and the client side: decode + ``AllocationReport`` analysis,
   next to ``Snapshot.statistics("lineno")`` on the same snapshot for reference.

    python benchmarks/bench_live_jobs.py [--rounds 8] [--window 2] [--write-docs]

``--write-docs`` replaces the ``## Live profiles through the agent`` section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vmtop import jobs_client  # noqa: E402
from vmtop.client import AgentClient  # noqa: E402
from vmtop.paths import socket_path  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Live profiles through the agent"
COMMAND = "python benchmarks/bench_live_jobs.py --write-docs"

TARGET = r"""
import asyncio, json, sys, threading, time, tracemalloc

MODE = sys.argv[1]
COUNT = [0]
LAG = [0.0]


def work(n=400):
    s = 0
    for i in range(n):
        s += i * i
    return s


def spin():
    while True:
        work()
        COUNT[0] += 1


async def stepper():
    while True:
        work()
        COUNT[0] += 1
        await asyncio.sleep(0)


async def ticker():
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(0.001)
        LAG[0] = max(LAG[0], time.perf_counter() - t0 - 0.001)


def command(line, stop):
    word = line.strip()
    if word == "count":
        print(json.dumps({"count": COUNT[0], "t": time.perf_counter(), "cpu": time.process_time()}), flush=True)
    elif word == "lag":
        print(json.dumps({"lag": LAG[0]}), flush=True)
        LAG[0] = 0.0
    elif word == "quit":
        stop.set()


async def main():
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    keep = []
    if MODE == "loop":
        asyncio.create_task(stepper())
    elif MODE == "threads":
        for i in range(2):
            threading.Thread(target=spin, daemon=True, name=f"spin-{i}").start()
    elif MODE == "alloc":
        tracemalloc.start(1)
        keep = [object() for _ in range(int(sys.argv[2]))]
        asyncio.create_task(ticker())

    def read():
        for line in sys.stdin:
            loop.call_soon_threadsafe(command, line, stop)

    threading.Thread(target=read, daemon=True).start()
    print(json.dumps({"ready": len(keep)}), flush=True)
    await stop.wait()


asyncio.run(main())
"""


class Target:
    def __init__(self, script: Path, *args: str, python: str = sys.executable) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [python, "-m", "vmtop", "run", "-q", str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
        )
        self.ready = self.ask(None)
        if not socket_path(self.proc.pid).exists():
            raise RuntimeError("the target has no agent socket")

    def ask(self, command: str | None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"target exited ({self.proc.poll()})")
        return dict(json.loads(line))

    def rate(self, window: float) -> tuple[float, float]:
        """(work per wall second, work per second of the whole process's CPU time)."""
        a = self.ask("count")
        time.sleep(window)
        b = self.ask("count")
        work = b["count"] - a["count"]
        return work / (b["t"] - a["t"]), work / max(1e-9, b["cpu"] - a["cpu"])

    def close(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)


def wait_running(client: AgentClient, job_id: int) -> None:
    while jobs_client.job_status(client, job_id, wait=0.05)["state"] == "starting":
        pass


def finish(client: AgentClient, job_id: int) -> Any:
    jobs_client.cancel_job(client, job_id)
    while jobs_client.job_status(client, job_id, wait=1)["state"] not in ("done", "failed"):
        pass
    return jobs_client.job_result(client, job_id)


ARMS = ("off", "on", "on, interval untouched")


def throughput(script: Path, mode: str, rounds: int, window: float) -> dict[str, Any]:
    """Per round: a window without a job, one with the default sampler, one with the sampler
    leaving the GIL switch interval alone; the order rotates from round to round."""
    target = Target(script, mode)
    ratios: dict[str, list[float]] = {arm: [] for arm in ARMS[1:]}
    cpu_ratios: dict[str, list[float]] = {arm: [] for arm in ARMS[1:]}
    rates: list[float] = []
    tick_cpu: list[float] = []
    try:
        with AgentClient(target.proc.pid, timeout=30) as client:
            target.rate(1.0)  # warm up with the client attached
            for r in range(rounds):
                arms: dict[str, tuple[float, float]] = {}
                for arm in ARMS[r % 3 :] + ARMS[: r % 3]:
                    if arm == "off":
                        arms[arm] = target.rate(window)
                        continue
                    opts: dict[str, Any] = {"rate": 100}
                    if arm != "on":
                        opts["switch_interval"] = None
                    job_id = int(jobs_client.start_job(client, "sample", window * 3, **opts)["id"])
                    wait_running(client, job_id)
                    arms[arm] = target.rate(window)
                    result = finish(client, job_id)
                    if arm == "on":
                        rates.append(float(result.meta["achieved_rate"]))
                        tick_cpu.append(result.meta["sampler_cpu"] / max(1, result.meta["ticks"]))
                for arm in ARMS[1:]:
                    ratios[arm].append(arms[arm][0] / arms["off"][0])
                    cpu_ratios[arm].append(arms[arm][1] / arms["off"][1])
    finally:
        target.close()
    return {
        "mode": mode,
        "ratios": ratios,
        "cpu_ratios": cpu_ratios,
        "rates": rates,
        "tick_cpu": tick_cpu,
    }


def allocation(script: Path, objects: int, rounds: int) -> dict[str, Any]:
    from vmtop.jobs_client import allocation_report

    target = Target(script, "alloc", str(objects))
    out: dict[str, list[float]] = {
        k: [] for k in ("pause", "stall", "job", "payload", "client", "statistics", "traces")
    }
    try:
        with AgentClient(target.proc.pid, timeout=60) as client:
            for _ in range(rounds):
                target.ask("lag")  # reset the stall probe
                t0 = time.perf_counter()
                result = jobs_client.start_job(client, "allocations", 0.2, depth=1)
                job_id = int(result["id"])
                while jobs_client.job_status(client, job_id, wait=1)["state"] not in (
                    "done",
                    "failed",
                ):
                    pass
                fetched = jobs_client.job_result(client, job_id)
                out["job"].append(time.perf_counter() - t0)
                out["stall"].append(float(target.ask("lag")["lag"]))
                out["pause"].append(float(fetched.meta["snapshot_pause"]))
                out["traces"].append(float(fetched.meta["traces"]))
                # Client side, as `vmtop allocations --pid` does it once the result is here.
                t1 = time.perf_counter()
                report = allocation_report(fetched, "bench")
                report.top(by="bytes", group="line", limit=15)
                _ = report.stacks
                out["client"].append(time.perf_counter() - t1)
                t2 = time.perf_counter()
                report.snapshot.statistics("lineno")
                out["statistics"].append(time.perf_counter() - t2)
                first = client.request("job_result", id=job_id, chunk=0)
                out["payload"].append(float(first["size"]))
    finally:
        target.close()
    return out


def fmt_ratio(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--alloc-rounds", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "live_bench_target.py"
        script.write_text(TARGET)
        runs = [throughput(script, mode, args.rounds, args.window) for mode in ("loop", "threads")]
        for run in runs:
            for arm in ARMS[1:]:
                print(
                    f"{run['mode']} ({arm}): wall {fmt_ratio(run['ratios'][arm])}, "
                    f"cpu {fmt_ratio(run['cpu_ratios'][arm])}",
                    flush=True,
                )
        alloc = allocation(script, args.objects, args.alloc_rounds)
    med = {k: statistics.median(v) for k, v in alloc.items()}
    print(json.dumps(med, indent=1))
    lines = [
        SECTION,
        "",
        f"Command: `{COMMAND}` (Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load_before:.1f} before / "
        f"{os.getloadavg()[0]:.1f} after; {args.rounds} rounds of {args.window:g} s windows).",
        "",
        "Target throughput while the agent samples it at 100 Hz: ratio of work done with a "
        "`sample` job running to without, same round, alternating order, a client attached in "
        "both arms; per wall second (what the program gets done; on a shared machine the "
        "load moves it by tens of percent either way) and per second of the target process's "
        "CPU time, sampler included (what the sampling costs, whatever the load). Goal >= 0.98:",
        "",
        "| workload | sampler | per wall second, median (min-max) "
        "| per CPU second, median (min-max) | achieved rate | sampler CPU per tick |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        what = {
            "loop": "asyncio task, ~50 µs steps",
            "threads": "2 CPU-bound threads",
        }[run["mode"]]
        for arm, label in zip(
            ARMS[1:], ("default (switch interval 200 µs)", "switch interval untouched"), strict=True
        ):
            rate = tick = ""
            if arm == "on":
                rate = f"{statistics.median(run['rates']):.1f} /s"
                tick = f"{statistics.median(run['tick_cpu']) * 1e6:.0f} µs"
            lines.append(
                f"| {what} | {label} | {fmt_ratio(run['ratios'][arm])} | "
                f"{fmt_ratio(run['cpu_ratios'][arm])} | {rate} | {tick} |"
            )
    cpu_medians = [statistics.median(run["cpu_ratios"]["on"]) for run in runs]
    met = min(cpu_medians) >= 0.98
    ticks = [statistics.median(run["tick_cpu"]) for run in runs]
    lines += [
        "",
        (
            "Verdict: the goal is met on this run (per CPU second)."
            if met
            else f"Verdict: the goal is **not shown** on this run: per CPU second the medians are "
            f"{min(cpu_medians):.3f}-{max(cpu_medians):.3f} with wide spreads at a load average "
            f"of {load_before:.1f} on {os.cpu_count()} CPUs. The sampler thread's own CPU is "
            f"{min(ticks) * 1e6:.0f}-{max(ticks) * 1e6:.0f} µs per tick here "
            f"({min(ticks) * 100:.1%}-{max(ticks) * 100:.1%} of a core at 100 Hz); most of "
            "it is waking up and taking the GIL on a loaded host (the tick's own work is "
            "~0.1 ms). Per wall second the sampled arms even run faster: the host's scheduler "
            "favours a process whose threads keep waking up, not a speed-up. Rerun on a quiet "
            "machine to judge the 2 % goal."
        ),
    ]
    lines += [
        "",
        f"Allocation report of {med['traces']:,.0f} live traces (tracemalloc already on, 1 "
        f"frame; medians of {args.alloc_rounds} jobs; goal: target pause <= 1 s):",
        "",
        "| step | where | median |",
        "| --- | --- | --- |",
        f"| longest event-loop stall during the whole job (the program's pause) | target | "
        f"{med['stall']:.3f} s |",
        f"| `take_snapshot()` wall time on the agent thread (includes waiting for the GIL) "
        f"| target | {med['pause']:.3f} s |",
        f"| job end to end (snapshot, encode, compress, ship, decompress) | both | "
        f"{med['job']:.2f} s |",
        f"| payload (zlib: JSON header + int64 columns) | wire | {med['payload'] / 1e6:.2f} MB |",
        f"| tables to `Snapshot` + `AllocationReport` top 15 + flamegraph stacks | client | "
        f"{med['client']:.2f} s |",
        f"| for reference: `Snapshot.statistics('lineno')` | client | {med['statistics']:.2f} s |",
        "",
        "Reading: the sampler holds the GIL only to read `sys._current_frames()` and walk the "
        "stacks, ~100 times a second; it lowers the GIL switch interval to 200 µs while it runs "
        "so that a loop in short steps is seen in its steps, not in `select` "
        "(profilers/thread_sampler.py explains why). The snapshot's traces are encoded as "
        "integer columns on an agent thread (C-speed comprehensions, no object per trace) and "
        "compressed by zlib without the GIL; the stall row is what the program actually felt. "
        "The payload is small here because every trace of this synthetic heap has the same "
        "1-frame traceback and size. Analysis happens in the client, never in the target.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.write_docs:
        write_section(report)
    return 0


def write_section(report: str) -> None:
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    start = text.find(SECTION + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + report
    else:
        end = text.find("\n## ", start + len(SECTION))
        tail = text[end + 1 :] if end >= 0 else ""
        text = text[:start] + report + ("\n" + tail if tail else "")
    DOC.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
