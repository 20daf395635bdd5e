"""``tests/targets/web_app.py`` with chosen parts of an attach installed in-process.

What an attached client costs a web service, part by part: the parts are installed on the
loop's own thread just before the app says it is ready, without the agent's threads (so the
``client`` part, the whole agent with a client connected, is measured apart by
``bench_web_parts.py``).

Usage: python web_parts.py SERVER PARTS   (PARTS: comma-separated, or "none")

Parts:

* ``steps``: the step hook (``Handle._run`` replaced) and its registry;
* ``register``: the agent's task factory registering each task, without uvloop's counting
  proxy;
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
from collections.abc import Callable
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
_keep: list[object] = []  # what we installed lives as long as the server


def install(parts: set[str]) -> dict[str, Any]:
    """Install ``parts`` on the running loop (called on the loop's thread); returns what
    :func:`uninstall` takes out."""
    loop = asyncio.get_running_loop()
    collector = Collector()
    installed: dict[str, Any] = {"collector": collector, "parts": set(parts)}
    if "attach" in parts:
        collector.attach()
        collector.refresh_loops(max_age=0.0)
        return installed
    if parts & {"steps", "register", "factory"}:
        collector.steps.install()
    if "register" in parts:  # the factory registers each task, without the counting proxy
        collector.steps.install_factory(loop, False)
    if "factory" in parts:
        collector.steps.install_factory(loop, is_uvloop(loop))
    if "lag" in parts:
        installed["lag"] = LagProbe(loop)
        installed["lag"].start()
    if "gc" in parts:
        installed["gc"] = GCWatcher()
        installed["gc"].start()
    if "mailbox" in parts:
        collector.mailboxes.install()
    return installed


def uninstall(installed: dict[str, Any]) -> None:
    """Take out what :func:`install` put in (on the loop's thread)."""
    collector = installed["collector"]
    if "attach" in installed["parts"]:
        collector.detach()
        return
    collector.steps.uninstall()
    collector.mailboxes.uninstall()
    for name in ("lag", "gc"):
        if name in installed:
            installed[name].stop()


def parse_parts(spec: str, name: str) -> set[str]:
    parts = set() if spec == "none" else set(spec.split(","))
    unknown = parts - set(PARTS)
    if unknown:
        raise SystemExit(f"{name}: unknown parts {sorted(unknown)} (known: {PARTS})")
    return parts


def serve(server: str, on_ready: Callable[[], None]) -> None:
    """Run ``web_app`` for ``server``; ``on_ready()`` runs on the loop's thread just before
    the app says it is ready."""
    say = web_app.say

    def ready(**obj: object) -> None:
        if obj.get("ready"):
            on_ready()
        say(**obj)

    web_app.say = ready  # type: ignore[assignment]
    sys.argv = [sys.argv[0], server, *sys.argv[3:]]
    web_app.main()


def main() -> None:
    server, parts = sys.argv[1], parse_parts(sys.argv[2], "web_parts")
    serve(server, lambda: _keep.append(install(parts)))


if __name__ == "__main__":
    main()
