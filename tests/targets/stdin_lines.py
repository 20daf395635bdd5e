"""Commands on stdin for the event-loop targets: one callback per line, EOF as ``None``.

``loop.add_reader(stdin, lambda: sys.stdin.readline())`` loses commands: when two lines are in
the pipe by the time the loop looks (a test that sends its next command as soon as the agent
answered, while the loop had not yet run the reader), ``readline`` buffers both and returns
one, and the descriptor never becomes readable for the second. This reads the raw descriptor
and hands over every complete line.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable


def read_lines(loop: asyncio.AbstractEventLoop, on_line: Callable[[str | None], None]) -> None:
    """Call ``on_line(line)`` (stripped, non-empty) for each line on stdin, in the loop, and
    ``on_line(None)`` once at EOF. Stop with ``loop.remove_reader(sys.stdin.fileno())``."""
    fd = sys.stdin.fileno()
    pending = [b""]

    def readable() -> None:
        data = os.read(fd, 65536)
        if not data:
            loop.remove_reader(fd)
            on_line(None)
            return
        *lines, pending[0] = (pending[0] + data).split(b"\n")
        for line in lines:
            if line.strip():
                on_line(line.decode().strip())

    loop.add_reader(fd, readable)
