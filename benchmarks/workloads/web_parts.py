"""``tests/targets/web_app.py`` with chosen parts of an attach installed in-process.

What an attached client costs a web service, part by part: the parts are installed on the
loop's own thread just before the app says it is ready, without the agent's threads (so the
``client`` part, the whole agent with a client connected, is measured apart by
``bench_web_parts.py``).

Usage: python web_parts.py SERVER PARTS   (PARTS: comma-separated, or "none")

Parts:

* ``steps``: the step hook (``Handle._run`` replaced) and its registry;
* ``factory``: the agent's task factory on the loop (needs ``steps``: it registers tasks);
* ``lag``: the loop-lag probe (a ``call_later`` every 25 ms);
* ``gc``: the GC watcher (one ``gc.callbacks`` entry);
* ``mailbox``: the dequeue hooks on ``asyncio.Queue`` / ``queue.Queue``;
* ``attach``: ``Collector.attach()`` + ``refresh_loops()``: all of the above, as a client's
  hello installs them.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "targets"))
sys.path.insert(0, str(REPO))

import web_app  # noqa: E402

from profilers.gcwatch import GCWatcher  # noqa: E402
from vmtop.agent.collector import Collector  # noqa: E402
from vmtop.agent.lag import LagProbe  # noqa: E402
from vmtop.agent.loops import is_uvloop  # noqa: E402

PARTS = ("steps", "factory", "lag", "gc", "mailbox", "attach")
_keep: list[object] = []  # what we installed lives as long as the server


def install(parts: set[str]) -> None:
    """Install ``parts`` on the running loop (called on the loop's thread)."""
    loop = asyncio.get_running_loop()
    collector = Collector()
    _keep.append(collector)
    if "attach" in parts:
        collector.attach()
        collector.refresh_loops(max_age=0.0)
        return
    if "steps" in parts or "factory" in parts:
        collector.steps.install()
    if "factory" in parts:
        collector.steps.install_factory(loop, is_uvloop(loop))
    if "lag" in parts:
        probe = LagProbe(loop)
        probe.start()
        _keep.append(probe)
    if "gc" in parts:
        watcher = GCWatcher()
        watcher.start()
        _keep.append(watcher)
    if "mailbox" in parts:
        collector.mailboxes.install()


def main() -> None:
    server, spec = sys.argv[1], sys.argv[2]
    parts = set() if spec == "none" else set(spec.split(","))
    unknown = parts - set(PARTS)
    if unknown:
        raise SystemExit(f"web_parts: unknown parts {sorted(unknown)} (known: {PARTS})")
    say = web_app.say

    def ready_after_install(**obj: object) -> None:
        if obj.get("ready"):
            install(parts)
            obj["parts"] = sorted(parts)
        say(**obj)

    web_app.say = ready_after_install  # type: ignore[assignment]
    sys.argv = [sys.argv[0], server, *sys.argv[3:]]
    web_app.main()


if __name__ == "__main__":
    main()
