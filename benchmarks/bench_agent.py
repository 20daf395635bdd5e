"""The live agent's cost to the program it watches: throughput ratios and snapshot loop time.

Parts (all by default; ``--parts chain,http,snapshot,hooks`` picks some):

* ``chain``: worst case, ``workloads/queue_chain.py`` (1000 tasks handing items along
  asyncio.Queue rings, one step of a few µs per item) run (a) plain, (b) under
  ``vmtop run`` with no client, (c) under ``vmtop run`` with an ``AgentClient`` attached
  (hello answered, so the hooks are in, before the window starts) refreshing a top-50
  snapshot every second. Ratios b/a, c/a and c/b of items/s and of items per CPU-second
  of the target (all its threads), paired per round. ``--bounded``: the back-pressure
  variant (``Queue(maxsize=1)``, awaited ``put``, half the queues full).
* ``http``: realistic, ``workloads/http_server.py`` (asyncio streams, keep-alive) under
  ``workloads/http_load.py`` (K keep-alive connections), same three modes; ratios of the
  responses/s the load generator counted and of responses per server CPU-second.
* ``snapshot``: ``workloads/many_tasks.py N`` under ``vmtop run`` for N = 1k, 10k, 100k;
  one client takes top-50 snapshots 1 s apart, sorts interleaved (reductions, mailbox,
  memory) in a shuffled order per round. "main": after 3 warm-up rounds, the median of 10
  per sort of ``Snapshot.loop_time`` (what the target's loop paid) and ``Snapshot.cost``;
  "settled": 5 more rounds once the agent's round-robin idle-consumer scan has visited
  every task. Generation-2 collections in each phase come from the node's GC figures.
* ``hooks``: where the attached cost goes: ``queue_chain.run_chain`` in this process with
  no hook, the step hook, the mailbox (``Queue.get_nowait``) hook, both, and a full
  ``Collector.attach()`` (thread CPU ns per item; one item = one task step); then ns per
  call of the hooked functions and of replicas that add the hook's pieces one at a time.
* ``instructions`` (only when asked; needs valgrind): instructions per item of the chain
  with no hook, the C step hook, the Python one, the dequeue (mailbox) hook alone, and all an attach installs (``attached``:
  C step hook, sampled mailbox hook, GC watcher, lag probe), counted by callgrind in
  ``workloads/chain_items.py`` at two sizes (deterministic: no noise, no pairing needed).
* ``snapprofile`` (only when asked): where one snapshot's loop time goes, in this process
  at the largest ``--sizes`` (cProfile, GC paused), right after attach and once settled.
* ``gccount`` (only when asked): what the agent's bookkeeping adds to the cyclic GC while it
  discovers a program, counted, not timed: ``many_tasks``' tasks in this process for each
  ``--sizes``, a Collector attached, top-50 snapshots of every sort on the loop thread until
  the idle-consumer scan has gone round once ("discovery"), then as many again ("settled");
  per phase the collections of each generation (``gc.callbacks``) and the GC-tracked
  objects that remain (``len(gc.get_objects())`` after ``gc.collect()``, by type).

Every timed part is paired and interleaved: each round runs every mode once in a shuffled
order, ratios are taken within a round, and the figure is the median over the rounds.

Usage::

    python benchmarks/bench_agent.py                 # full run (~8 min on a 2-CPU VM)
    python benchmarks/bench_agent.py --quick         # smoke run (~15 s), same output shape
    python benchmarks/bench_agent.py --json out.json # also write every figure as JSON
    python benchmarks/bench_agent.py --parts snapprofile --sizes 100000
    python benchmarks/bench_agent.py --parts gccount --sizes 1000,100000

Prints Markdown tables (ready for docs/benchmarks.md) to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKLOADS = HERE / "workloads"
MODES = ("plain", "run", "attached")
SORTS = ("reductions", "mailbox", "memory")
PARTS = ("chain", "http", "snapshot", "hooks")
EXTRA_PARTS = ("snapprofile", "instructions", "gccount")  # on request only: --parts snapprofile

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(WORKLOADS))


# -- configuration ----------------------------------------------------------------------------
class Config:
    def __init__(self, args: argparse.Namespace) -> None:
        quick = args.quick
        self.python: str = args.python
        self.rounds: int = args.rounds or (1 if quick else 7)
        self.duration: float = args.duration or (1.5 if quick else 3.0)
        self.refresh: float = 1.0 if not quick else 0.2
        self.bounded: bool = args.bounded
        self.connections: int = args.connections
        self.sizes: list[int] = args.sizes or ([1000] if quick else [1000, 10_000, 100_000])
        self.warmup: int = 1 if quick else 3
        self.samples: int = 2 if quick else 10
        self.spacing: float = 0.2 if quick else 1.0
        self.settle_rounds: int = 1 if quick else 5
        self.hook_rounds: int = 1 if quick else 15
        self.hook_duration: float = 0.2 if quick else 0.4
        self.seed: int = args.seed
        self.rng = random.Random(args.seed)


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), e.get("PYTHONPATH", "")) if p)
    e.pop("PYTHONASYNCIODEBUG", None)
    return e


def target_cmd(cfg: Config, mode: str, script: str, *args: str) -> list[str]:
    path = str(WORKLOADS / script)
    if mode == "plain":
        return [cfg.python, path, *args]
    return [cfg.python, "-m", "vmtop", "run", "-q", path, *args]


@contextmanager
def child(
    cmd: list[str], stdin: bool = True, grace: float = 10.0
) -> Iterator[tuple[subprocess.Popen[str], IO[str]]]:
    """A child process with piped stdin/stdout; stderr goes to a temp file shown on failure.

    On exit: stdin is closed, the child gets ``grace`` seconds to end, then SIGINT (so that
    ``vmtop run`` removes its socket), then SIGKILL.
    """
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=REPO,
            env=env(),
        )
        try:
            yield proc, err
        finally:
            if proc.stdin is not None:
                with suppress(OSError):
                    proc.stdin.close()
            for action in (None, signal.SIGINT, signal.SIGKILL):
                if action is not None and proc.poll() is None:
                    proc.send_signal(action)
                try:
                    proc.wait(grace if action is None else 5.0)
                    break
                except subprocess.TimeoutExpired:
                    continue
            if proc.stdout is not None:
                proc.stdout.close()


def read_json(proc: subprocess.Popen[str], err: IO[str], what: str) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        err.seek(0)
        raise SystemExit(f"bench_agent: {what} ended early (exit {proc.returncode}):\n{err.read()}")
    data: dict[str, Any] = json.loads(line)
    return data


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` so far, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> tuple[float, float]:
    """(main thread, all other threads) CPU seconds of ``pid`` so far, from /proc."""
    main = other = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue  # the thread ended meanwhile
        cpu = (int(fields[11]) + int(fields[12])) / tick
        if int(tid) == pid:
            main += cpu
        else:
            other += cpu
    return main, other


class Refresher:
    """A client refreshing a top-50 snapshot every ``every`` seconds, like ``vmtop top``."""

    def __init__(self, pid: int, every: float, first: float | None = None) -> None:
        """``first``: seconds from ``start()`` to the first refresh (default ``every``)."""
        from vmtop.client import AgentClient

        t0 = time.perf_counter()
        # The first attach imports the GC watcher on the agent's thread: behind a CPU-bound
        # loop that can take seconds (GIL hand-offs on every file the import touches).
        self.client = AgentClient(pid, timeout=30.0).connect()  # hello answered: hooks are in
        self.hello_seconds = time.perf_counter() - t0
        self.every = every
        self.first = every if first is None else first
        self.loop_times: list[float] = []
        self.costs: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from vmtop.client import ClientError, TargetGone

        wait = self.first
        while not self._stop.wait(wait):
            wait = self.every
            try:
                snap = self.client.snapshot(sort="reductions", limit=50)
            except TargetGone:
                return  # the window ended and the target exited under a late refresh
            except ClientError:
                if self._stop.is_set():
                    return
                raise
            self.loop_times.append(snap.loop_time)
            self.costs.append(snap.cost)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


# -- part 1: worst case -------------------------------------------------------------------------
def chain_once(cfg: Config, mode: str) -> dict[str, Any]:
    extra = ["--bounded"] if cfg.bounded else []
    cmd = target_cmd(cfg, mode, "queue_chain.py", "--duration", str(cfg.duration), *extra)
    with child(cmd) as (proc, err):
        ready = read_json(proc, err, "queue_chain.py")
        refresher = Refresher(int(ready["pid"]), cfg.refresh) if mode == "attached" else None
        if refresher is not None:
            refresher.start()
        assert proc.stdin is not None
        pid = int(ready["pid"])
        t0 = thread_cpu(pid)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        result = read_json(proc, err, "queue_chain.py")
        t1 = thread_cpu(pid)
        result["main_thread_cpu"] = t1[0] - t0[0]
        result["other_threads_cpu"] = t1[1] - t0[1]
        if refresher is not None:
            refresher.stop()
            result["snapshots"] = len(refresher.loop_times)
            result["loop_time"] = sum(refresher.loop_times)
            result["snapshot_cost"] = sum(refresher.costs)
            result["hello_seconds"] = refresher.hello_seconds
        return result


def paired(
    cfg: Config, once: Callable[[Config, str], dict[str, Any]], keys: tuple[str, ...]
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    # run/plain, attached/plain, and attached/run (the agent's attached cost alone: both
    # processes then have the same interpreter start-up and imports).
    pairs = {"run": "plain", "attached": "plain", "attached/run": "run"}
    ratios: dict[str, dict[str, list[float]]] = {k: {m: [] for m in pairs} for k in keys}
    loads = [loadavg()]
    for _ in range(cfg.rounds):
        order = list(MODES)
        cfg.rng.shuffle(order)
        got = {mode: once(cfg, mode) for mode in order}
        for mode in MODES:
            runs[mode].append(got[mode])
        for key in keys:
            for name, base in pairs.items():
                ratios[key][name].append(got[name.split("/")[0]][key] / got[base][key])
        loads.append(loadavg())
    out: dict[str, Any] = {"rounds": cfg.rounds, "loadavg": loads, "runs": runs}
    for key in keys:
        out[key] = {m: summary([r[key] for r in runs[m]]) for m in MODES}
        out[key + "_ratio"] = {m: summary(v) for m, v in ratios[key].items()}
    return out


def agent_share(out: dict[str, Any]) -> None:
    """Per mode: CPU of threads other than the main (loop) thread, per second of window;
    attached: snapshot loop time per second and per snapshot."""
    out["other_threads_cpu_per_s"] = {
        m: sum(r["other_threads_cpu"] for r in out["runs"][m])
        / sum(r["elapsed"] for r in out["runs"][m])
        for m in MODES
    }
    att = out["runs"]["attached"]
    snaps = max(1, sum(r["snapshots"] for r in att))
    window = sum(r["elapsed"] for r in att)
    out["snapshot_loop_time_per_s"] = sum(r["loop_time"] for r in att) / window
    out["snapshot_loop_time_each"] = sum(r["loop_time"] for r in att) / snaps
    out["snapshot_cost_each"] = sum(r["snapshot_cost"] for r in att) / snaps
    out["hello_seconds"] = summary([r["hello_seconds"] for r in att])


def bench_chain(cfg: Config) -> dict[str, Any]:
    out = paired(cfg, chain_once, ("items_per_s", "items_per_cpu_s"))
    agent_share(out)
    out["step_us_plain"] = 1e6 / out["items_per_s"]["plain"]["median"]
    return out


# -- part 2: realistic --------------------------------------------------------------------------
def http_once(cfg: Config, mode: str) -> dict[str, Any]:
    with child(target_cmd(cfg, mode, "http_server.py")) as (server, serr):
        ready = read_json(server, serr, "http_server.py")
        pid = int(ready["pid"])
        refresher = Refresher(pid, cfg.refresh) if mode == "attached" else None
        load_cmd = [
            cfg.python,
            str(WORKLOADS / "http_load.py"),
            str(ready["port"]),
            "--connections",
            str(cfg.connections),
            "--duration",
            str(cfg.duration),
        ]
        with child(load_cmd, stdin=False) as (load, lerr):
            read_json(load, lerr, "http_load.py")  # {"connected": K}
            cpu0, lcpu0, t0 = proc_cpu(pid), proc_cpu(load.pid), thread_cpu(pid)
            if refresher is not None:
                refresher.start()
            result = read_json(load, lerr, "http_load.py")
            cpu, t1 = proc_cpu(pid) - cpu0, thread_cpu(pid)
            result["main_thread_cpu"] = t1[0] - t0[0]
            result["other_threads_cpu"] = t1[1] - t0[1]
            result["load_cpu_share"] = (proc_cpu(load.pid) - lcpu0) / result["elapsed"]
            result["server_cpu_share"] = cpu / result["elapsed"]
            result["responses_per_cpu_s"] = result["responses"] / max(cpu, 0.01)
        if refresher is not None:
            refresher.stop()
            result["snapshots"] = len(refresher.loop_times)
            result["loop_time"] = sum(refresher.loop_times)
            result["snapshot_cost"] = sum(refresher.costs)
            result["hello_seconds"] = refresher.hello_seconds
        assert server.stdin is not None
        server.stdin.write("quit\n")
        server.stdin.flush()
        read_json(server, serr, "http_server.py")  # {"requests": ...}
        return result


def bench_http(cfg: Config) -> dict[str, Any]:
    out = paired(cfg, http_once, ("responses_per_s", "responses_per_cpu_s"))
    for key in ("server_cpu_share", "load_cpu_share"):
        out[key] = {m: summary([r[key] for r in out["runs"][m]]) for m in MODES}
    agent_share(out)
    return out


# -- part 3: snapshot loop time -----------------------------------------------------------------
def _gen2(snap: Any) -> tuple[int, float, float]:
    """(collections, pause total s, pause max s) of generation 2 since attach, from the node."""
    gens = snap.node.gc
    if len(gens) < 3:
        return 0, 0.0, 0.0
    return gens[2].collections, gens[2].pause_total, gens[2].pause_max


class SnapshotPhase:
    """Interleaved top-50 snapshots of every sort, ``spacing`` s apart; the first
    ``warmup`` rounds are not recorded."""

    def __init__(self, client: Any, cfg: Config) -> None:
        self.client = client
        self.cfg = cfg
        self.last = time.monotonic()
        self.taken = 0
        self.snap: Any = None

    def take(self, sort: str, spacing: float) -> Any:
        time.sleep(max(0.0, self.last + spacing - time.monotonic()))
        self.last = time.monotonic()
        self.snap = self.client.snapshot(sort=sort, limit=50)
        self.taken += 1
        return self.snap

    def rounds(self, warmup: int, samples: int) -> dict[str, Any]:
        loop_times: dict[str, list[float]] = {s: [] for s in SORTS}
        costs: dict[str, list[float]] = {s: [] for s in SORTS}
        g0 = (0, 0.0, 0.0)
        for rnd in range(warmup + samples):
            if rnd == warmup and self.snap is not None:
                g0 = _gen2(self.snap)  # counts since attach, as of the last snapshot
            order = list(SORTS)
            self.cfg.rng.shuffle(order)
            for sort in order:
                snap = self.take(sort, self.cfg.spacing)
                if rnd >= warmup:
                    loop_times[sort].append(snap.loop_time)
                    costs[sort].append(snap.cost)
        g1 = _gen2(self.snap)
        return {
            "loop_time": {s: summary(v) for s, v in loop_times.items()},
            "cost": {s: summary(v) for s, v in costs.items()},
            "gen2_collections": g1[0] - g0[0],
            "gen2_pause_total": g1[1] - g0[1],
            "gen2_pause_max_since_attach": g1[2],
        }


def snapshot_size(cfg: Config, n: int) -> dict[str, Any]:
    from vmtop.client import AgentClient

    cmd = target_cmd(cfg, "run", "many_tasks.py", str(n))
    with child(cmd, grace=0.0) as (proc, err):
        read_json(proc, err, "many_tasks.py")
        client = AgentClient(proc.pid, timeout=30.0).connect()
        try:
            phase = SnapshotPhase(client, cfg)
            out: dict[str, Any] = {"main": phase.rounds(cfg.warmup, cfg.samples)}
            out["tasks"] = phase.snap.node.tasks
            # Settled: once the agent's round-robin scans (idle consumers, queue lengths,
            # memory; each a few ms of loop time a refresh) have visited every task, they
            # only re-check what moved: a few hundred tasks a refresh, so tasks/500 + 5.
            for _ in range(min(250, out["tasks"] // 500 + 5)):
                phase.take("reductions", 0.2)
            out["settled"] = phase.rounds(0, cfg.settle_rounds)
            out["settled"]["after_snapshots"] = phase.taken - cfg.settle_rounds * len(SORTS)
        finally:
            client.close()
    return out


def bench_snapshot(cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {
        "warmup": cfg.warmup,
        "samples": cfg.samples,
        "settle_rounds": cfg.settle_rounds,
        "sizes": {},
    }
    loads = [loadavg()]
    for n in cfg.sizes:
        out["sizes"][str(n)] = snapshot_size(cfg, n)
        loads.append(loadavg())
    out["loadavg"] = loads
    return out


# -- part 4: where the attached cost goes (in process) ------------------------------------------
def _hook_configs() -> dict[str, tuple[Callable[[], Any], Callable[[Any], None]]]:
    """Hook sets for the in-process chain: the agent's own hooks, and replicas of their
    pieces (``  replica:`` rows) so that the extra cost per item can be attributed."""
    import asyncio.events
    from time import perf_counter

    from vmtop.agent.collector import Collector
    from vmtop.agent.mailbox import MailboxTracker
    from vmtop.agent.step_hooks import StepCounter

    orig_run = asyncio.events.Handle._run
    orig_get = asyncio.Queue.get_nowait
    current_task = asyncio.current_task
    task_types = (asyncio.Task,)

    def run_empty(self: Any, _o: Any = orig_run) -> None:
        _o(self)

    def run_timed(self: Any, _o: Any = orig_run, _pc: Any = perf_counter) -> None:
        owner = getattr(self._callback, "__self__", None)
        t0 = _pc()
        try:
            _o(self)
        finally:
            dt = _pc() - t0
            if isinstance(owner, task_types):
                del dt

    def get_empty(q: Any, _o: Any = orig_get) -> Any:
        return _o(q)

    def get_task(q: Any, _o: Any = orig_get, _ct: Any = current_task) -> Any:
        item = _o(q)
        _ct()
        return item

    def patch(run: Any = None, get: Any = None) -> Callable[[], Any]:
        def on() -> None:
            if run is not None:
                asyncio.events.Handle._run = run  # type: ignore[method-assign]
            if get is not None:
                asyncio.Queue.get_nowait = get  # type: ignore[method-assign]

        return on

    def unpatch(_: Any) -> None:
        asyncio.events.Handle._run = orig_run  # type: ignore[method-assign]
        asyncio.Queue.get_nowait = orig_get  # type: ignore[method-assign]

    def steps_on(kind: str = "c") -> Any:
        s = StepCounter(hook_kind=kind)
        s.install()
        assert s.implementation == kind, f"the {kind} step hook is not available"
        return s

    def mailbox_on() -> Any:
        m = MailboxTracker()
        m.install()
        return m

    def both_on() -> Any:
        return steps_on(), mailbox_on()

    def both_off(pair: Any) -> None:
        pair[0].uninstall()
        pair[1].uninstall()

    def collector_on() -> Any:
        c = Collector()
        c.attach()
        return c

    return {
        "none": (lambda: None, lambda _: None),
        "step hook (C)": (steps_on, lambda s: s.uninstall()),
        "step hook (Python)": (lambda: steps_on("python"), lambda s: s.uninstall()),
        "  replica: empty Handle._run wrapper": (patch(run=run_empty), unpatch),
        "  replica: + getattr owner, 2 perf_counter, isinstance": (patch(run=run_timed), unpatch),
        "mailbox hook": (mailbox_on, lambda m: m.uninstall()),
        "  replica: empty get_nowait wrapper": (patch(get=get_empty), unpatch),
        "  replica: + asyncio.current_task()": (patch(get=get_task), unpatch),
        "step + mailbox": (both_on, both_off),
        "Collector.attach()": (collector_on, lambda c: c.detach()),
    }


def bench_instructions(cfg: Config) -> dict[str, Any]:
    """Instructions per chain item under each step hook (callgrind; see the module doc)."""
    import shutil

    if shutil.which("valgrind") is None:
        raise SystemExit("bench_agent: the instructions part needs valgrind")
    small, large = (5_000, 15_000) if cfg.hook_rounds == 1 else (20_000, 60_000)
    python = os.path.realpath(cfg.python)  # valgrind must see the interpreter, not a shim

    def refs(kind: str, items: int) -> int:
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python]
            + [str(WORKLOADS / "chain_items.py"), kind, str(items)],
            capture_output=True,
            text=True,
            check=True,
        )
        line = next(ln for ln in run.stderr.splitlines() if "refs:" in ln)
        return int(line.split("refs:")[1].strip().replace(",", ""))

    per_item = {}
    for kind in ("none", "c", "python", "mailbox", "attached"):
        per_item[kind] = (refs(kind, large) - refs(kind, small)) / (large - small)
    return {"items": [small, large], "per_item": per_item}


def bench_snapprofile(cfg: Config) -> dict[str, Any]:
    """Where a snapshot's loop time goes: many_tasks' tasks in this process, a Collector
    attached, ``take_snapshot`` on the loop thread under cProfile, per sort, in two phases
    (right after attach, and once the idle-consumer scan has visited every task). The GC
    is paused around the profiled snapshot so that a collection it happens to trigger does
    not hide the snapshot's own work (collections are reported by the ``snapshot`` part)."""
    import cProfile
    import gc
    import pstats

    from many_tasks import busy, idle

    from vmtop.agent.collector import Collector
    from vmtop.agent.snapshot import Session, SnapshotRequest, take_snapshot

    n = max(cfg.sizes)

    def top(prof: cProfile.Profile, k: int = 6) -> list[dict[str, Any]]:
        stats = pstats.Stats(prof)
        rows = []
        for (file, line, name), (_cc, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
            where = f"{Path(file).name}:{line}({name})" if line else name
            rows.append({"function": where, "calls": nc, "own_ms": tt * 1e3, "cum_ms": ct * 1e3})
        rows.sort(key=lambda r: -r["own_ms"])
        return rows[:k]

    async def run() -> dict[str, Any]:
        tasks = [asyncio.create_task(idle(asyncio.Queue())) for _ in range(n)]
        tasks += [asyncio.create_task(busy(asyncio.Queue())) for _ in range(10)]
        await asyncio.sleep(0.5)
        collector = Collector()
        collector.attach()
        session = Session()
        out: dict[str, Any] = {"tasks": n}
        try:
            for phase in ("after attach", "settled"):
                if phase == "settled":
                    for _ in range(min(250, n // 500 + 5)):  # the round-robin scans settle
                        await asyncio.sleep(0.01)
                        take_snapshot(collector, session, SnapshotRequest())
                out[phase] = {}
                for sort in SORTS:
                    await asyncio.sleep(0.2)
                    prof = cProfile.Profile()
                    gc.disable()
                    c0 = time.thread_time()
                    prof.enable()
                    try:
                        snap = take_snapshot(collector, session, SnapshotRequest(sort=sort))
                    finally:
                        prof.disable()
                        cpu = time.thread_time() - c0
                        gc.enable()
                    out[phase][sort] = {
                        "loop_time_ms": snap.loop_time * 1e3,
                        "cpu_ms": cpu * 1e3,
                        "top": top(prof),
                    }
        finally:
            collector.detach()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return out

    return asyncio.run(run())


def bench_gccount(cfg: Config) -> dict[str, Any]:
    """GC-tracked objects the agent leaves behind while it discovers ``many_tasks``' tasks,
    and the collections of each generation meanwhile (counts: no timing, no noise)."""
    import collections
    import gc

    from many_tasks import busy, idle

    from vmtop.agent.collector import Collector
    from vmtop.agent.snapshot import Session, SnapshotRequest, take_snapshot

    def census() -> tuple[int, collections.Counter[str]]:
        gc.collect()
        objs = gc.get_objects()
        return len(objs), collections.Counter(type(o).__name__ for o in objs)

    async def one(n: int) -> dict[str, Any]:
        tasks = [asyncio.create_task(idle(asyncio.Queue())) for _ in range(n)]
        tasks += [asyncio.create_task(busy(asyncio.Queue())) for _ in range(10)]
        await asyncio.sleep(0.5)
        collector = Collector()
        collector.attach()
        session = Session()
        take_snapshot(collector, session, SnapshotRequest())  # imports, first loop scan
        out: dict[str, Any] = {"tasks": n}
        full: list[int] = []

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "stop":
                full.append(info["generation"])

        try:
            snaps = 0
            for phase in ("discovery", "settled"):
                count0, types0 = census()
                del full[:]
                gc.callbacks.append(on_gc)
                try:
                    target = snaps * 2 if phase == "settled" else 0
                    while (
                        collector.scan_cursor < n + 10 if phase == "discovery" else snaps < target
                    ) and snaps < 10_000:
                        sort = (*SORTS, "time")[snaps % (len(SORTS) + 1)]
                        take_snapshot(collector, session, SnapshotRequest(sort=sort))
                        snaps += 1
                        await asyncio.sleep(0.001)
                finally:
                    gc.callbacks.remove(on_gc)
                count1, types1 = census()
                grown = {k: types1[k] - types0.get(k, 0) for k in types1}
                out[phase] = {
                    "snapshots": snaps,
                    "collections": [full.count(g) for g in range(3)],
                    "tracked_grown": count1 - count0,
                    "by_type": dict(sorted(grown.items(), key=lambda kv: -kv[1])[:6]),
                }
        finally:
            collector.detach()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return out

    return {"sizes": {str(n): asyncio.run(one(n)) for n in cfg.sizes}}


def bench_hooks(cfg: Config) -> dict[str, Any]:
    """queue_chain in this process under each hook set: CPU ns per item (thread CPU)."""
    import asyncio.events

    from queue_chain import run_chain

    configs = _hook_configs()
    original_run = asyncio.events.Handle._run
    original_get = asyncio.Queue.get_nowait
    ns: dict[str, list[float]] = {name: [] for name in configs}
    extra: dict[str, list[float]] = {name: [] for name in configs if name != "none"}
    for _ in range(cfg.hook_rounds):
        order = list(configs)
        cfg.rng.shuffle(order)
        got: dict[str, float] = {}
        for name in order:
            on, off = configs[name]
            state = on()
            try:
                r = asyncio.run(run_chain(cfg.hook_duration))
            finally:
                off(state)
            assert asyncio.events.Handle._run is original_run, "hook left behind"
            assert asyncio.Queue.get_nowait is original_get, "hook left behind"
            got[name] = r["cpu"] / r["items"] * 1e9  # the window only
            ns[name].append(got[name])
        for name in extra:
            extra[name].append(got[name] - got["none"])
    return {
        "rounds": cfg.hook_rounds,
        "duration": cfg.hook_duration,
        "cpu_ns_per_item": {k: summary(v) for k, v in ns.items()},
        "extra_cpu_ns_per_item": {k: summary(v) for k, v in extra.items()},
        "micro": micro_costs(cfg),
    }


def micro_costs(cfg: Config) -> dict[str, float]:
    """ns per call (best of repeats) of the hooked functions and of replicas of their pieces.

    ``Handle._run`` runs a handle whose callback is a Task's bound method (so the step hook
    counts it as a task step); the replicas add the hook's pieces one at a time.
    """
    import asyncio.events
    import timeit
    from time import perf_counter

    from vmtop.agent.mailbox import MailboxTracker
    from vmtop.agent.step_hooks import StepCounter

    number = 20_000 if cfg.hook_rounds == 1 else 100_000
    repeat = 3 if cfg.hook_rounds == 1 else 9

    def best(fn: Callable[[], Any]) -> float:
        return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e9

    class Local(threading.local):
        def __init__(self) -> None:
            self.counts: dict[Any, list[float]] = {}

    async def measure() -> dict[str, list[float]]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        handle = asyncio.events.Handle(task.get_name, (), loop)
        q: asyncio.Queue[int] = asyncio.Queue()
        orig_run = asyncio.events.Handle._run
        orig_get = asyncio.Queue.get_nowait
        plain: dict[Any, list[float]] = {}
        local = Local()
        tt = (asyncio.Task,)

        def put_get() -> None:
            q.put_nowait(1)
            q.get_nowait()

        def r_try(self: Any, _o: Any = orig_run) -> None:
            try:
                _o(self)
            finally:
                pass

        def r_time(self: Any, _o: Any = orig_run, _pc: Any = perf_counter) -> None:
            owner = getattr(self._callback, "__self__", None)
            t0 = _pc()
            try:
                _o(self)
            finally:
                dt = _pc() - t0
                if isinstance(owner, tt):
                    pass
                _ = dt

        def counting(counts_of: Callable[[], dict[Any, list[float]]]) -> Any:
            def r(self: Any, _o: Any = orig_run, _pc: Any = perf_counter) -> None:
                owner = getattr(self._callback, "__self__", None)
                t0 = _pc()
                try:
                    _o(self)
                finally:
                    dt = _pc() - t0
                    if isinstance(owner, tt):
                        counts = counts_of()
                        c = counts.get(owner)
                        if c is None:
                            counts[owner] = [1, dt]
                        else:
                            c[0] += 1
                            c[1] += dt

            return r

        def g_wrap(q_: Any, _o: Any = orig_get) -> Any:
            return _o(q_)

        variants: list[tuple[str, Callable[[], Any], Callable[[], None]]] = []

        def patch_run(fn: Any) -> Callable[[], Any]:
            def on() -> None:
                asyncio.events.Handle._run = fn  # type: ignore[method-assign]

            return on

        def restore() -> None:
            asyncio.events.Handle._run = orig_run  # type: ignore[method-assign]
            asyncio.Queue.get_nowait = orig_get  # type: ignore[method-assign]

        def steps_on(kind: str = "c") -> Any:
            s = StepCounter(hook_kind=kind)
            s.install()
            return s

        def mailbox_on() -> Any:
            m = MailboxTracker()
            m.install()
            put_get()  # the queue and its consumer are known from here on
            return m

        def get_wrap_on() -> None:
            asyncio.Queue.get_nowait = g_wrap  # type: ignore[method-assign,assignment]

        run_variants = [
            ("Handle._run: original", lambda: None),
            ("Handle._run: agent step hook (C)", steps_on),
            ("Handle._run: agent step hook (Python)", lambda: steps_on("python")),
            ("  replica: try/finally wrapper only", patch_run(r_try)),
            ("  replica: + getattr owner, 2 perf_counter, isinstance", patch_run(r_time)),
            ("  replica: + count into a plain dict", patch_run(counting(lambda: plain))),
            (
                "  replica: + dict reached through threading.local",
                patch_run(counting(lambda: local.counts)),
            ),
        ]
        get_variants = [
            ("Queue put_nowait+get_nowait: original", lambda: None),
            ("Queue put_nowait+get_nowait: agent mailbox hook", mailbox_on),
            ("  replica: empty get_nowait wrapper", get_wrap_on),
        ]
        for name, on in run_variants:
            variants.append((name, lambda: handle._run(), on))  # noqa: B023
        for name, on in get_variants:
            variants.append((name, put_get, on))
        variants.append(("asyncio.current_task()", asyncio.current_task, lambda: None))
        variants.append(("time.perf_counter()", perf_counter, lambda: None))
        out: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        for _ in range(1 if cfg.hook_rounds == 1 else 3):
            for name, fn, on in variants:
                state = on()
                try:
                    out[name].append(best(fn))
                finally:
                    if state is not None:
                        state.uninstall()
                    restore()
        return out

    got = asyncio.run(measure())
    return {name: min(v) for name, v in got.items()}


# -- output -------------------------------------------------------------------------------------
def fmt_ratio(s: dict[str, float]) -> str:
    return f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})"


def agent_line(d: dict[str, Any]) -> str:
    other = d["other_threads_cpu_per_s"]
    return (
        f"Attached: {d['snapshot_loop_time_each'] * 1e3:.2f} ms loop time and "
        f"{d['snapshot_cost_each'] * 1e3:.2f} ms cost a snapshot, loop time "
        f"{d['snapshot_loop_time_per_s'] * 100:.2f} % of the window; CPU of threads other "
        f"than the loop's, per s of window: plain {other['plain'] * 1e3:.0f} ms, run "
        f"{other['run'] * 1e3:.0f} ms, attached {other['attached'] * 1e3:.0f} ms. Hello "
        f"(first attach) median {d['hello_seconds']['median']:.3f} s, max "
        f"{d['hello_seconds']['max']:.3f} s."
    )


def print_tables(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(
        f"Python {m['python']} ({m['executable']}), {m['nproc']} CPUs, {m['date']}, "
        f"load average {m['load_before']} before / {m['load_after']} after, seed {m['seed']}\n"
    )
    if "chain" in res:
        c = res["chain"]
        print(f"### Worst case: queue_chain.py ({c['rounds']} rounds, median (min-max))\n")
        print("| mode | items/s | ratio to plain | items per CPU-s ratio |")
        print("|---|---|---|---|")
        for mode in MODES:
            ips = c["items_per_s"][mode]["median"]
            if mode == "plain":
                print(f"| plain | {ips:,.0f} | 1 | 1 |")
            else:
                r, rc = c["items_per_s_ratio"][mode], c["items_per_cpu_s_ratio"][mode]
                print(f"| {mode} | {ips:,.0f} | {fmt_ratio(r)} | {fmt_ratio(rc)} |")
        r, rc = c["items_per_s_ratio"]["attached/run"], c["items_per_cpu_s_ratio"]["attached/run"]
        print(f"| attached / run | | {fmt_ratio(r)} | {fmt_ratio(rc)} |")
        print(f"\nplain: {c['step_us_plain']:.2f} µs of wall time an item. " + agent_line(c))
        print(f"load {c['loadavg']}\n")
    if "http" in res:
        h = res["http"]
        print(f"### Realistic: http_server.py + http_load.py ({h['rounds']} rounds)\n")
        print(
            "| mode | responses/s | ratio to plain | responses per server CPU-s ratio "
            "| server CPU share |"
        )
        print("|---|---|---|---|---|")
        for mode in MODES:
            rps = h["responses_per_s"][mode]["median"]
            share = h["server_cpu_share"][mode]["median"]
            if mode == "plain":
                ratio = cratio = "1"
            else:
                ratio = fmt_ratio(h["responses_per_s_ratio"][mode])
                cratio = fmt_ratio(h["responses_per_cpu_s_ratio"][mode])
            print(f"| {mode} | {rps:,.0f} | {ratio} | {cratio} | {share:.2f} |")
        ratio = fmt_ratio(h["responses_per_s_ratio"]["attached/run"])
        cratio = fmt_ratio(h["responses_per_cpu_s_ratio"]["attached/run"])
        print(f"| attached / run | | {ratio} | {cratio} | |")
        gen = h["load_cpu_share"]["plain"]["median"]
        print(f"\nload generator CPU share (plain) {gen:.2f}. " + agent_line(h))
        print(f"load {h['loadavg']}\n")
    if "snapshot" in res:
        s = res["snapshot"]
        print(
            f"### Top-50 snapshot: loop time in ms, median (max) [median cost]; main = "
            f"{s['samples']} rounds after {s['warmup']} warm-up rounds, settled = "
            f"{s['settle_rounds']} rounds once the idle-consumer scan has covered every task\n"
        )
        print("| tasks | phase | " + " | ".join(SORTS) + " | gen-2 GCs in phase |")
        print("|---|---|" + "---|" * len(SORTS) + "---|")
        for n, d in s["sizes"].items():
            for phase in ("main", "settled"):
                p = d[phase]
                cells = []
                for sort in SORTS:
                    lt, cost = p["loop_time"][sort], p["cost"][sort]
                    cells.append(
                        f"{lt['median'] * 1e3:.1f} ({lt['max'] * 1e3:.0f}) "
                        f"[{cost['median'] * 1e3:.1f}]"
                    )
                label = phase if phase == "main" else f"settled (after {p['after_snapshots']})"
                gcs = f"{p['gen2_collections']} ({p['gen2_pause_total'] * 1e3:.0f} ms)"
                print(f"| {int(n):,} | {label} | " + " | ".join(cells) + f" | {gcs} |")
        print(f"\nload {s['loadavg']}\n")
    if "snapprofile" in res:
        sp = res["snapprofile"]
        print(
            f"### In process: one top-50 snapshot under cProfile at {sp['tasks']:,} tasks "
            "(GC paused; times include cProfile's own overhead)\n"
        )
        print("| phase | sort | loop time ms | CPU ms | top functions by own time (ms) |")
        print("|---|---|---|---|---|")
        for phase in ("after attach", "settled"):
            for sort, d in sp[phase].items():
                fns = "; ".join(f"{r['function']} {r['own_ms']:.0f}" for r in d["top"][:4])
                print(f"| {phase} | {sort} | {d['loop_time_ms']:.0f} | {d['cpu_ms']:.0f} | {fns} |")
        print()
    if "gccount" in res:
        print(
            "### In process: GC-tracked objects the agent leaves while it discovers "
            "many_tasks (counts)\n"
        )
        print("| tasks | phase | snapshots | collections gen 0/1/2 | tracked objects grown |")
        print("|---|---|---|---|---|")
        for n, d in res["gccount"]["sizes"].items():
            for phase in ("discovery", "settled"):
                p = d[phase]
                kinds = ", ".join(f"{k} {v:+,}" for k, v in p["by_type"].items() if v > 0)
                print(
                    f"| {int(n):,} | {phase} | {p['snapshots']} | "
                    + "/".join(str(c) for c in p["collections"])
                    + f" | {p['tracked_grown']:+,} ({kinds}) |"
                )
        print()
    if "instructions" in res:
        ins = res["instructions"]
        small, large = ins["items"]
        print(f"### Instructions per chain item (callgrind, {large:,} minus {small:,} items)\n")
        print("| step hook | instructions per item | vs no hook |\n|---|---|---|")
        base = ins["per_item"]["none"]
        for kind, v in ins["per_item"].items():
            print(f"| {kind} | {v:,.0f} | {v / base:.3f} |")
        print()
    if "hooks" in res:
        k = res["hooks"]
        print(
            f"### In process: queue_chain.run_chain, thread CPU ns per item "
            f"({k['rounds']} rounds of {k['duration']} s per hook set)\n"
        )
        print("| hooks | CPU ns/item median (min) | extra vs none, paired median (min..max) |")
        print("|---|---|---|")
        for name, v in k["cpu_ns_per_item"].items():
            ex = k["extra_cpu_ns_per_item"].get(name)
            exs = "-" if ex is None else f"{ex['median']:+.0f} ({ex['min']:+.0f}..{ex['max']:+.0f})"
            print(f"| {name} | {v['median']:.0f} ({v['min']:.0f}) | {exs} |")
        print("\n| call | ns per call (best of repeats) |\n|---|---|")
        for name, v in k["micro"].items():
            print(f"| {name} | {v:.0f} |")
        print()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short smoke run, same output shape")
    p.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma list of {', '.join(PARTS + EXTRA_PARTS)} (default: all but snapprofile)",
    )
    p.add_argument("--rounds", type=int, default=0, help="rounds of chain/http (default 7)")
    p.add_argument("--duration", type=float, default=0.0, help="measured window (default 3 s)")
    p.add_argument("--connections", type=int, default=16, help="HTTP keep-alive connections")
    p.add_argument("--bounded", action="store_true", help="chain: Queue(maxsize=1) and awaited put")
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None)
    p.add_argument("--python", default=sys.executable, help="interpreter of the targets")
    p.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    p.add_argument("--json", type=Path, help="write every figure to this file")
    args = p.parse_args(argv)
    parts = [x for x in args.parts.split(",") if x]
    bad = [x for x in parts if x not in PARTS + EXTRA_PARTS]
    if bad or args.rounds < 0 or args.duration < 0 or args.connections < 1:
        print(f"bench_agent: bad --parts/--rounds/--duration: {bad or ''}", file=sys.stderr)
        return 2
    cfg = Config(args)
    version = subprocess.run(
        [cfg.python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    res: dict[str, Any] = {
        "machine": {
            "python": version,
            "executable": cfg.python,
            "nproc": os.cpu_count(),
            "platform": platform.platform(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "load_before": list(os.getloadavg()),
            "seed": cfg.seed,
            "quick": args.quick,
            "command": " ".join(["python", "benchmarks/bench_agent.py", *(argv or sys.argv[1:])]),
        }
    }
    t0 = time.monotonic()
    runners = {
        "chain": bench_chain,
        "http": bench_http,
        "snapshot": bench_snapshot,
        "snapprofile": bench_snapprofile,
        "instructions": bench_instructions,
        "gccount": bench_gccount,
    }
    for part in parts:
        if part == "hooks":
            if cfg.python != sys.executable:
                print("bench_agent: hooks part runs in this interpreter", file=sys.stderr)
            res["hooks"] = bench_hooks(cfg)
        else:
            res[part] = runners[part](cfg)
        res.setdefault("seconds_at_end_of", {})[part] = round(time.monotonic() - t0, 1)
    res["machine"]["load_after"] = list(os.getloadavg())
    res["machine"]["seconds"] = time.monotonic() - t0
    print_tables(res)
    print(f"total {res['machine']['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
