"""How many frames a tracemalloc traceback keeps: the one default and limit that the engine
(``vmtop.allocations(nframe=...)``), ``vmtop allocations --depth`` and the live allocations job
share.

The limit is tracemalloc's own (65535): tracemalloc stores only the frames a stack has, so a
high limit costs nothing until the program's stacks are that deep, and any lower number would
be a second, arbitrary one (the live job once refused more than 1000 frames that the command
accepted). The default, 25 frames, is what the cost figures in docs/memory.md are measured at.
A leaf module: the agent imports it without importing the reports.
"""

from __future__ import annotations

DEFAULT_NFRAME = 25
MAX_NFRAME = 65535  # tracemalloc.start() refuses more


def check_nframe(nframe: int) -> int:
    if isinstance(nframe, bool) or not isinstance(nframe, int):
        raise TypeError(f"nframe must be an int, not {type(nframe).__name__}")
    if not 1 <= nframe <= MAX_NFRAME:
        raise ValueError(f"nframe must be between 1 and {MAX_NFRAME}, not {nframe}")
    return nframe
