"""``tests/targets/web_app.py`` whose chosen parts of an attach go on at SIGUSR1, off at SIGUSR2.

For ``benchmarks/bench_web_toggle.py``: the same server process measured with a part on and
off in turns, without an agent or a client (``bench_web_windows.py`` measures those).

Usage: python web_toggle.py SERVER PARTS   (PARTS: comma-separated)

Parts: those of ``web_parts.py`` (its docstring says what each installs).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import web_parts  # noqa: E402


def main() -> None:
    server, parts = sys.argv[1], web_parts.parse_parts(sys.argv[2], "web_toggle")
    on: list[dict[str, Any]] = []  # what is installed now (at most one)

    def switch_on() -> None:
        if not on:
            on.append(web_parts.install(parts))

    def switch_off() -> None:
        if on:
            web_parts.uninstall(on.pop())

    def signals() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, switch_on)
        loop.add_signal_handler(signal.SIGUSR2, switch_off)

    web_parts.serve(server, signals)


if __name__ == "__main__":
    main()
