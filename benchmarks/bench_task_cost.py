"""What vmtop's task factory adds to each task, in-process, without a server.

Batches of tasks running a three-step coroutine (two ``await asyncio.sleep(0)``) are created
and awaited on one loop, in turns: no factory (``none``), the factory that registers each
task (``register``), and the factory as an attach installs it (``factory``: on uvloop, the
counting proxy). No client, no refresh: what a task that ends between two refreshes costs.
Prints the median nanoseconds per task of each mode and the difference to ``none``.

``--first-take N``: instead, N tasks that stay pending are made at once with the attach's
factory, step once, and the registry's next ``take()`` (what a refresh drains first) is
timed: on uvloop that is where a pending task gets its entry, once.

Usage: python benchmarks/bench_task_cost.py [--loop uvloop|asyncio] [--rounds N] [--tasks N]
       python benchmarks/bench_task_cost.py --first-take 100000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmtop.agent.loops import is_uvloop  # noqa: E402
from vmtop.agent.step_hooks import StepCounter  # noqa: E402

MODES = ("none", "register", "factory")


async def handler() -> int:
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return 1


async def batch(n: int) -> float:
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    tasks = [loop.create_task(handler()) for _ in range(n)]
    for t in tasks:
        await t
    return (time.perf_counter() - t0) / n * 1e9


async def measure(rounds: int, n: int) -> dict[str, list[float]]:
    loop = asyncio.get_running_loop()
    results: dict[str, list[float]] = {m: [] for m in MODES}
    await batch(n)  # warm-up
    for _ in range(rounds):
        for mode in MODES:
            steps = StepCounter(hook_kind="c")
            if mode != "none":
                steps.install()
                steps.install_factory(loop, mode == "factory" and is_uvloop(loop))
            results[mode].append(await batch(n))
            steps.uninstall()
    return results


async def first_take(n: int) -> str:
    loop = asyncio.get_running_loop()
    steps = StepCounter(hook_kind="c")
    steps.install()
    steps.install_factory(loop, is_uvloop(loop))
    gate = asyncio.Event()
    tasks = [loop.create_task(gate.wait()) for _ in range(n)]
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    taken, _ = steps.registry.take()
    t1 = time.perf_counter()
    steps.registry.take()
    t2 = time.perf_counter()
    gate.set()
    await asyncio.gather(*tasks)
    steps.uninstall()
    return (
        f"{n} pending tasks, one step each: first take() {1e3 * (t1 - t0):.1f} ms "
        f"({len(taken)} entries), the next {1e3 * (t2 - t1):.2f} ms"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--first-take", type=int, default=0, metavar="N")
    cfg = p.parse_args()
    if cfg.first_take:
        run = uvloop_run if cfg.loop == "uvloop" else asyncio.run
        print(f"{cfg.loop}, Python {sys.version.split()[0]}: " + run(first_take(cfg.first_take)))
        return
    if cfg.loop == "uvloop":
        import uvloop

        results = uvloop.run(measure(cfg.rounds, cfg.tasks))
    else:
        results = asyncio.run(measure(cfg.rounds, cfg.tasks))
    base = statistics.median(results["none"])
    print(f"{cfg.loop}, Python {sys.version.split()[0]}, {cfg.rounds} rounds of {cfg.tasks} tasks")
    print("| mode | ns per task (median) | beyond none |")
    print("|---|---|---|")
    for mode in MODES:
        med = statistics.median(results[mode])
        print(f"| {mode} | {med:.0f} | {med - base:+.0f} |")


def uvloop_run(coro: Any) -> Any:
    import uvloop

    return uvloop.run(coro)


if __name__ == "__main__":
    main()
