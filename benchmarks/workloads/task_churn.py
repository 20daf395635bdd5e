"""The worst case for per-task bookkeeping: tasks of three steps each, made and finished in
bursts of 100 (``gather``), nothing else. MODE: plain | hook (the step hook alone) | full (the
step hook and the agent's task factory), N tasks in all.

Usage: python benchmarks/workloads/task_churn.py MODE N
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vmtop.agent.step_hooks import StepCounter  # noqa: E402


async def handler() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def main(mode: str, n: int) -> None:
    loop = asyncio.get_running_loop()
    if mode != "plain":
        counter = StepCounter()
        counter.install()
        if mode == "full":
            counter.install_factory(loop, wrap=False)
    for _ in range(n // 100):
        await asyncio.gather(*[loop.create_task(handler()) for _ in range(100)])


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("plain", "hook", "full"):
        raise SystemExit("usage: task_churn.py plain|hook|full N")
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
