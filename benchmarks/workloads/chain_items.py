"""queue_chain for a fixed number of items under one step hook, for instruction counts.

    python benchmarks/workloads/chain_items.py none|c|python|mailbox|attached ITEMS

Builds the rings, installs the hook (none: the stdlib's ``Handle._run``; mailbox: the dequeue hook alone; attached: all
that a client's attach installs, ``Collector.attach()`` with the lag probe), runs until
``ITEMS`` hand-offs happened, removes the hook and exits. Run under
``valgrind --tool=callgrind`` at two sizes: the difference in instructions divided by the
difference in items is the cost of one item, start-up and set-up cancelled out.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from queue_chain import Counter, build  # noqa: E402

from vmtop.agent.collector import Collector  # noqa: E402
from vmtop.agent.mailbox import MailboxTracker  # noqa: E402
from vmtop.agent.step_hooks import StepCounter  # noqa: E402


async def main(kind: str, items: int) -> None:
    count = Counter()
    tasks = build(100, 10, count)
    await asyncio.sleep(0)
    collector = None
    if kind == "attached":
        collector = Collector()
        collector.attach()
        collector.refresh_loops()
    mailboxes = None
    if kind == "mailbox":
        mailboxes = MailboxTracker()
        mailboxes.install()
    steps = None if kind in ("none", "attached", "mailbox") else StepCounter(hook_kind=kind)
    if steps is not None:
        steps.install()
        assert steps.implementation == kind, kind
    while count.n < items:
        await asyncio.sleep(0)
    if steps is not None:
        steps.drain()
        steps.uninstall()
    if collector is not None:
        collector.detach()
    if mailboxes is not None:
        mailboxes.uninstall()
    for t in tasks:
        t.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
