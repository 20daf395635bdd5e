"""The Trio adapter's cost beside asyncio's, on the worst case: tasks that only yield.

Parts (both by default; ``--parts modes,inproc`` picks some):

* ``modes``: ``workloads/checkpoints.py`` (``--tasks`` tasks, each step = ``count += 1`` and
  one ``trio.lowlevel.checkpoint()`` / ``asyncio.sleep(0)``) for each runtime, (a) plain,
  (b) under ``vmtop run`` with no client, (c) under ``vmtop run`` with an ``AgentClient``
  attached (hello answered, so the Trio instrument or the asyncio step hook is in, before
  the window starts) refreshing a top-50 snapshot every second. Each round runs the six
  (runtime, mode) pairs once in a shuffled order; ratios b/a, c/a and c/b of items/s and of
  items per CPU-second are taken within a round, per runtime; the figure is the median.
* ``inproc``: ``checkpoints.run_trio`` in this process with no instrument, with an instrument
  whose hooks do nothing (Trio's dispatch alone) and with the agent's ``StepInstrument`` (what
  an attach adds to a Trio run), paired and shuffled: thread CPU ns per step.

Usage::

    python benchmarks/bench_trio.py                  # ~3 min on a 2-CPU VM
    python benchmarks/bench_trio.py --quick          # smoke run, same output shape
    python benchmarks/bench_trio.py --json out.json
    python benchmarks/bench_trio.py --parts modes --work 100   # steps of ~5 µs of work

Prints Markdown tables (ready for docs/benchmarks.md) to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "workloads"))

import bench_agent  # noqa: E402  (shared helpers: child processes, CPU, a refresher)

RUNTIMES = ("trio", "asyncio")
MODES = bench_agent.MODES  # plain, run, attached
PAIRS = {"run": "plain", "attached": "plain", "attached/run": "run"}
KEYS = ("items_per_s", "items_per_cpu_s")


class Config:
    def __init__(self, args: argparse.Namespace) -> None:
        quick = args.quick
        self.python: str = args.python
        self.rounds: int = args.rounds or (1 if quick else 7)
        self.duration: float = args.duration or (1.0 if quick else 3.0)
        self.tasks: int = args.tasks
        self.work: int = args.work
        self.refresh: float = 0.2 if quick else 1.0
        self.inproc_rounds: int = 1 if quick else 15
        self.inproc_duration: float = 0.2 if quick else 0.5
        self.seed: int = args.seed
        self.rng = random.Random(args.seed)


def once(cfg: Config, runtime: str, mode: str) -> dict[str, Any]:
    args = ("--runtime", runtime, "--duration", str(cfg.duration), "--tasks", str(cfg.tasks))
    args += ("--work", str(cfg.work))
    cmd = bench_agent.target_cmd(cfg, mode, "checkpoints.py", *args)  # type: ignore[arg-type]
    with bench_agent.child(cmd) as (proc, err):
        ready = bench_agent.read_json(proc, err, "checkpoints.py")
        pid = int(ready["pid"])
        refresher = bench_agent.Refresher(pid, cfg.refresh) if mode == "attached" else None
        if refresher is not None:
            refresher.start()
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        result = bench_agent.read_json(proc, err, "checkpoints.py")
        if refresher is not None:
            refresher.stop()
            result["snapshots"] = len(refresher.loop_times)
            result["loop_time"] = sum(refresher.loop_times)
        return result


def bench_modes(cfg: Config) -> dict[str, Any]:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {r: {m: [] for m in MODES} for r in RUNTIMES}
    ratios = {r: {k: {p: [] for p in PAIRS} for k in KEYS} for r in RUNTIMES}
    loads = [bench_agent.loadavg()]
    for _ in range(cfg.rounds):
        order = [(r, m) for r in RUNTIMES for m in MODES]
        cfg.rng.shuffle(order)
        got = {(r, m): once(cfg, r, m) for r, m in order}
        for r in RUNTIMES:
            for m in MODES:
                runs[r][m].append(got[r, m])
            for k in KEYS:
                for name, base in PAIRS.items():
                    ratios[r][k][name].append(got[r, name.split("/")[0]][k] / got[r, base][k])
        loads.append(bench_agent.loadavg())
    out: dict[str, Any] = {"rounds": cfg.rounds, "loadavg": loads, "runs": runs}
    for r in RUNTIMES:
        out[r] = {
            k: {m: bench_agent.summary([x[k] for x in runs[r][m]]) for m in MODES} for k in KEYS
        }
        for k in KEYS:
            out[r][k + "_ratio"] = {p: bench_agent.summary(v) for p, v in ratios[r][k].items()}
        att = runs[r]["attached"]
        window = sum(x["elapsed"] for x in att)
        out[r]["snapshot_loop_time_per_s"] = sum(x["loop_time"] for x in att) / window
        out[r]["snapshot_loop_time_each"] = sum(x["loop_time"] for x in att) / max(
            1, sum(x["snapshots"] for x in att)
        )
    return out


class EmptyInstrument:
    """Both step hooks, doing nothing: what Trio's dispatch to an instrument costs alone."""

    def before_task_step(self, task: Any) -> None:
        pass

    def after_task_step(self, task: Any) -> None:
        pass


def bench_inproc(cfg: Config) -> dict[str, Any]:
    import checkpoints

    from vmtop.agent.trio_tasks import StepInstrument

    kinds: dict[str, Any] = {"plain": None, "empty": EmptyInstrument, "agent": StepInstrument}

    def measure(kind: str) -> float:
        factory = kinds[kind]
        instruments = (factory(),) if factory is not None else ()
        t0 = time.thread_time()
        result = checkpoints.run_trio(cfg.inproc_duration, cfg.tasks, instruments)
        return (time.thread_time() - t0) / max(1, result["items"]) * 1e9

    measure("plain")  # warm-up: imports, caches
    got: dict[str, list[float]] = {k: [] for k in kinds}
    added: list[float] = []
    for _ in range(cfg.inproc_rounds):
        order = list(kinds)
        cfg.rng.shuffle(order)
        one = {kind: measure(kind) for kind in order}
        for kind in kinds:
            got[kind].append(one[kind])
        added.append(one["agent"] - one["plain"])
    return {
        "rounds": cfg.inproc_rounds,
        "ns_per_step_plain": bench_agent.summary(got["plain"]),
        "ns_per_step_empty_instrument": bench_agent.summary(got["empty"]),
        "ns_per_step_instrumented": bench_agent.summary(got["agent"]),
        "ns_added": bench_agent.summary(added),
    }


def fmt(s: dict[str, float], digits: int = 3) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def print_tables(res: dict[str, Any]) -> None:
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, {res['date']}")
    print(f"seed {res['seed']}, tasks {res['tasks']}, work {res['work']}\n")
    modes = res.get("modes")
    if modes:
        print(f"rounds {modes['rounds']}, load average {modes['loadavg']}\n")
        print("| | trio | asyncio |")
        print("| --- | --- | --- |")
        plain = [modes[r]["items_per_s"]["plain"]["median"] for r in RUNTIMES]
        print(f"| plain steps/s | {plain[0]:,.0f} | {plain[1]:,.0f} |")
        for k, label in (("items_per_s", "per wall s"), ("items_per_cpu_s", "per CPU-s")):
            for p in PAIRS:
                name = p if "/" in p else f"{p} / plain"
                cells = " | ".join(fmt(modes[r][k + "_ratio"][p]) for r in RUNTIMES)
                print(f"| {name}, {label} | {cells} |")
        cells = " | ".join(f"{modes[r]['snapshot_loop_time_per_s'] * 100:.2f} %" for r in RUNTIMES)
        print(f"| snapshot loop time, share of the window | {cells} |")
        cells = " | ".join(f"{modes[r]['snapshot_loop_time_each'] * 1e3:.2f} ms" for r in RUNTIMES)
        print(f"| loop time of one top-50 snapshot | {cells} |\n")
    inproc = res.get("inproc")
    if inproc:
        print(f"in process, {inproc['rounds']} paired rounds (thread CPU ns per step):\n")
        print("| Trio run | ns per step |")
        print("| --- | --- |")
        print(f"| no instrument | {fmt(inproc['ns_per_step_plain'], 0)} |")
        empty = fmt(inproc["ns_per_step_empty_instrument"], 0)
        print(f"| an instrument whose two step hooks do nothing | {empty} |")
        print(f"| agent's StepInstrument | {fmt(inproc['ns_per_step_instrumented'], 0)} |")
        print(f"| added by the instrument | {fmt(inproc['ns_added'], 0)} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--parts", default="modes,inproc")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--duration", type=float, default=0.0)
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--work", type=int, default=0, help="loop iterations in each step")
    ap.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in ("modes", "inproc")]
    if bad:
        ap.error(f"unknown part(s): {', '.join(bad)}")
    cfg = Config(args)
    res: dict[str, Any] = {
        "seed": cfg.seed,
        "tasks": cfg.tasks,
        "work": cfg.work,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if "modes" in parts:
        res["modes"] = bench_modes(cfg)
    if "inproc" in parts:
        res["inproc"] = bench_inproc(cfg)
    print_tables(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
