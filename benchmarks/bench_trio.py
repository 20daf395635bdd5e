"""The Trio adapter's cost beside asyncio's, on the worst case: tasks that only yield.

Parts (both by default; ``--parts modes,inproc`` picks some):

* ``modes``: ``workloads/checkpoints.py`` (``--tasks`` tasks, each step = ``count += 1`` and
  one ``trio.lowlevel.checkpoint()`` / ``asyncio.sleep(0)``) for each runtime, (a) plain,
  (b) under ``vmtop run`` with no client, (c) under ``vmtop run`` with an ``AgentClient``
  attached (hello answered, so the Trio step counter or the asyncio step hook is in, before
  the window starts) refreshing a top-50 snapshot every second. Each round runs the
  (runtime, mode) pairs once in a shuffled order; ratios b/a, c/a and c/b of items/s and of
  items per CPU-second are taken within a round, per runtime; the figure is the median.
  ``--runtimes`` picks the runtimes (default ``trio,asyncio``); ``trio-instrument`` is Trio
  with ``VMTOP_HOOKS=python`` (the agent counts with its Trio instrument instead of the C
  counting proxy), to compare the two in the same rounds.
* ``inproc``: ``checkpoints.run_trio`` in this process with no instrument, with an instrument
  whose hooks do nothing (Trio's dispatch alone), with the agent's ``StepInstrument`` (the
  fallback) and with the agent's C counting proxy around every task's coroutine (what an
  attach adds to a Trio run), paired and shuffled: thread CPU ns per step; and the same for
  a run that spawns tasks that return at once (100 per nursery), ns per task, where the proxy
  pays its ``task_spawned`` hook and a wrap per task.

Usage::

    python benchmarks/bench_trio.py                  # ~3 min on a 2-CPU VM
    python benchmarks/bench_trio.py --quick          # smoke run, same output shape
    python benchmarks/bench_trio.py --json out.json
    python benchmarks/bench_trio.py --parts modes --work 100   # steps of ~5 µs of work
    python benchmarks/bench_trio.py --parts modes --runtimes trio,trio-instrument

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
KNOWN_RUNTIMES = ("trio", "trio-instrument", "asyncio")
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
        self.inproc_rounds: int = args.inproc_rounds or (1 if quick else 15)
        self.inproc_duration: float = 0.2 if quick else 0.5
        self.seed: int = args.seed
        self.runtimes: tuple[str, ...] = tuple(args.runtimes)
        self.rng = random.Random(args.seed)


def once(cfg: Config, runtime: str, mode: str) -> dict[str, Any]:
    workload = "trio" if runtime == "trio-instrument" else runtime
    args = ("--runtime", workload, "--duration", str(cfg.duration), "--tasks", str(cfg.tasks))
    args += ("--work", str(cfg.work))
    cmd = bench_agent.target_cmd(cfg, mode, "checkpoints.py", *args)  # type: ignore[arg-type]
    if runtime == "trio-instrument":
        cmd = ["env", "VMTOP_HOOKS=python", *cmd]
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
    runtimes = cfg.runtimes
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {r: {m: [] for m in MODES} for r in runtimes}
    ratios = {r: {k: {p: [] for p in PAIRS} for k in KEYS} for r in runtimes}
    loads = [bench_agent.loadavg()]
    for _ in range(cfg.rounds):
        order = [(r, m) for r in runtimes for m in MODES]
        cfg.rng.shuffle(order)
        got = {(r, m): once(cfg, r, m) for r, m in order}
        for r in runtimes:
            for m in MODES:
                runs[r][m].append(got[r, m])
            for k in KEYS:
                for name, base in PAIRS.items():
                    ratios[r][k][name].append(got[r, name.split("/")[0]][k] / got[r, base][k])
        loads.append(bench_agent.loadavg())
    out: dict[str, Any] = {
        "rounds": cfg.rounds,
        "loadavg": loads,
        "runs": runs,
        "runtimes": list(runtimes),
    }
    for r in runtimes:
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


def proxy_hook() -> Any:
    """The agent's counting proxy put around every task's coroutine as it is spawned (its
    ``task_spawned`` instrument; an attach wraps the tasks already there the same way)."""
    from vmtop.agent.trio_tasks import CoroCounter, make_counter

    counter = make_counter()
    if not isinstance(counter, CoroCounter):
        raise SystemExit("bench_trio: the C hooks are not built (python setup.py build_ext -i)")
    return counter.hook


def run_spawns(duration: float, instruments: tuple[Any, ...]) -> dict[str, Any]:
    """Tasks that return at once, 100 to a nursery, for ``duration`` s: spawn-bound."""
    import trio

    async def nothing() -> None:
        pass

    async def main() -> int:
        n = 0
        end = time.perf_counter() + duration
        while time.perf_counter() < end:
            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(nothing)
            n += 100
        return n

    return {"items": trio.run(main, instruments=instruments)}


def bench_inproc(cfg: Config) -> dict[str, Any]:
    import checkpoints

    from vmtop.agent.trio_tasks import StepInstrument

    kinds: dict[str, Any] = {
        "plain": None,
        "empty": EmptyInstrument,
        "agent": StepInstrument,
        "proxy": proxy_hook,
    }

    def measure(kind: str) -> float:
        spawns = kind.startswith("spawn-")
        factory = kinds[kind.removeprefix("spawn-")]
        instruments = (factory(),) if factory is not None else ()
        t0 = time.thread_time()
        if spawns:
            result = run_spawns(cfg.inproc_duration, instruments)
        else:
            result = checkpoints.run_trio(cfg.inproc_duration, cfg.tasks, instruments)
        return (time.thread_time() - t0) / max(1, result["items"]) * 1e9

    spawn_kinds = ["spawn-plain", "spawn-agent", "spawn-proxy"]
    measure("plain")  # warm-up: imports, caches
    got: dict[str, list[float]] = {k: [] for k in [*kinds, *spawn_kinds]}
    added: list[float] = []
    added_proxy: list[float] = []
    for _ in range(cfg.inproc_rounds):
        order = [*kinds, *spawn_kinds]
        cfg.rng.shuffle(order)
        one = {kind: measure(kind) for kind in order}
        for kind in order:
            got[kind].append(one[kind])
        added.append(one["agent"] - one["plain"])
        added_proxy.append(one["proxy"] - one["plain"])
    return {
        "rounds": cfg.inproc_rounds,
        "ns_per_step_plain": bench_agent.summary(got["plain"]),
        "ns_per_step_empty_instrument": bench_agent.summary(got["empty"]),
        "ns_per_step_instrumented": bench_agent.summary(got["agent"]),
        "ns_added": bench_agent.summary(added),
        "ns_per_step_proxy": bench_agent.summary(got["proxy"]),
        "ns_added_proxy": bench_agent.summary(added_proxy),
        "ns_per_task_spawned": {
            k.removeprefix("spawn-"): bench_agent.summary(got[k]) for k in spawn_kinds
        },
    }


def fmt(s: dict[str, float], digits: int = 3) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def fmt_signed(s: dict[str, float]) -> str:  # an added cost near zero may be negative
    return f"{s['median']:.0f} ({s['min']:.0f} to {s['max']:.0f})"


def print_tables(res: dict[str, Any]) -> None:
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, {res['date']}")
    print(f"seed {res['seed']}, tasks {res['tasks']}, work {res['work']}\n")
    modes = res.get("modes")
    if modes:
        runtimes = modes.get("runtimes", RUNTIMES)
        print(f"rounds {modes['rounds']}, load average {modes['loadavg']}\n")
        print("| | " + " | ".join(runtimes) + " |")
        print("| --- |" + " --- |" * len(runtimes))
        plain = " | ".join(f"{modes[r]['items_per_s']['plain']['median']:,.0f}" for r in runtimes)
        print(f"| plain steps/s | {plain} |")
        for k, label in (("items_per_s", "per wall s"), ("items_per_cpu_s", "per CPU-s")):
            for p in PAIRS:
                name = p if "/" in p else f"{p} / plain"
                cells = " | ".join(fmt(modes[r][k + "_ratio"][p]) for r in runtimes)
                print(f"| {name}, {label} | {cells} |")
        cells = " | ".join(f"{modes[r]['snapshot_loop_time_per_s'] * 100:.2f} %" for r in runtimes)
        print(f"| snapshot loop time, share of the window | {cells} |")
        cells = " | ".join(f"{modes[r]['snapshot_loop_time_each'] * 1e3:.2f} ms" for r in runtimes)
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
        print(f"| agent's C counting proxy | {fmt(inproc['ns_per_step_proxy'], 0)} |")
        print(f"| added by the instrument | {fmt_signed(inproc['ns_added'])} |")
        print(f"| added by the counting proxy | {fmt_signed(inproc['ns_added_proxy'])} |\n")
        spawned = inproc.get("ns_per_task_spawned")
        if spawned:
            print("| Trio run spawning tasks that return at once | ns per task |")
            print("| --- | --- |")
            print(f"| no instrument | {fmt(spawned['plain'], 0)} |")
            print(f"| agent's StepInstrument | {fmt(spawned['agent'], 0)} |")
            print(f"| agent's C counting proxy | {fmt(spawned['proxy'], 0)} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--parts", default="modes,inproc")
    ap.add_argument("--runtimes", default=",".join(RUNTIMES), type=lambda v: v.split(","))
    ap.add_argument("--inproc-rounds", type=int, default=0)
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
    bad = [r for r in args.runtimes if r not in KNOWN_RUNTIMES]
    if bad or not args.runtimes:
        ap.error(f"unknown runtime(s): {', '.join(bad)} (known: {', '.join(KNOWN_RUNTIMES)})")
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
