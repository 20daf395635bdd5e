"""``tests/targets/web_app.py`` whose chosen parts of an attach go on at SIGUSR1, off at SIGUSR2.

For ``benchmarks/bench_web_toggle.py``: the same server process measured with a part on and
off in turns, without an agent or a client (``bench_web_windows.py`` measures those).

Usage: python web_toggle.py SERVER PARTS   (PARTS: comma-separated)

Parts (as ``web_parts.py``, plus ``register``):

* ``steps``: the step hook (``Handle._run`` replaced; uvloop never calls it);
* ``register``: the agent's task factory that registers each task (its entry, a weakref with
  a callback, its group) without the counting proxy;
* ``factory``: the agent's task factory as an attach installs it (on uvloop: the counting
  proxy around each task's coroutine, and the registration);
* ``lag``: the loop-lag probe; ``gc``: the GC watcher; ``mailbox``: the dequeue hooks;
* ``attach``: ``Collector.attach()`` + ``refresh_loops()``, all of the above.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "targets"))
sys.path.insert(0, str(REPO))

import web_app  # noqa: E402

from profilers.gcwatch import GCWatcher  # noqa: E402
from vmtop.agent.collector import Collector  # noqa: E402
from vmtop.agent.lag import LagProbe  # noqa: E402
from vmtop.agent.loops import is_uvloop  # noqa: E402

PARTS = ("steps", "register", "factory", "lag", "gc", "mailbox", "attach")


class Toggle:
    def __init__(self, parts: set[str]) -> None:
        self.parts = parts
        self.on: dict[str, Any] = {}

    def switch_on(self) -> None:
        if self.on:
            return
        loop = asyncio.get_running_loop()
        collector = self.on["collector"] = Collector()
        if "attach" in self.parts:
            collector.attach()
            collector.refresh_loops(max_age=0.0)
            return
        if self.parts & {"steps", "register", "factory"}:
            collector.steps.install()
        if "register" in self.parts:
            collector.steps.install_factory(loop, False)
        if "factory" in self.parts:
            collector.steps.install_factory(loop, is_uvloop(loop))
        if "lag" in self.parts:
            self.on["lag"] = LagProbe(loop)
            self.on["lag"].start()
        if "gc" in self.parts:
            self.on["gc"] = GCWatcher()
            self.on["gc"].start()
        if "mailbox" in self.parts:
            collector.mailboxes.install()

    def switch_off(self) -> None:
        collector = self.on.pop("collector", None)
        if collector is None:
            return
        if "attach" in self.parts:
            collector.detach()
            return
        collector.steps.uninstall()
        collector.mailboxes.uninstall()
        for name in ("lag", "gc"):
            if name in self.on:
                self.on.pop(name).stop()


def main() -> None:
    server, spec = sys.argv[1], sys.argv[2]
    parts = set(spec.split(","))
    unknown = parts - set(PARTS)
    if unknown:
        raise SystemExit(f"web_toggle: unknown parts {sorted(unknown)} (known: {PARTS})")
    toggle = Toggle(parts)
    say = web_app.say

    def ready_with_signals(**obj: object) -> None:
        if obj.get("ready"):
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGUSR1, toggle.switch_on)
            loop.add_signal_handler(signal.SIGUSR2, toggle.switch_off)
            obj["parts"] = sorted(parts)
        say(**obj)

    web_app.say = ready_with_signals  # type: ignore[assignment]
    sys.argv = [sys.argv[0], server, *sys.argv[3:]]
    web_app.main()


if __name__ == "__main__":
    main()
