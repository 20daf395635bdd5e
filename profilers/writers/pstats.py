"""pstats files (what ``cProfile.Profile.dump_stats`` writes): for pstats, snakeviz, tuna."""

from __future__ import annotations

import os
import pstats
from typing import Any


class _Snapshot:
    """What ``pstats.Stats`` accepts as a profiler: ``create_stats()`` and a ``stats`` dict."""

    def __init__(self, stats: dict[Any, Any]) -> None:
        self.stats = stats

    def create_stats(self) -> None:
        pass


def write_pstats(stats: dict[Any, Any], path: str | os.PathLike[str]) -> None:
    """Write a pstats dict ``{(file, line, function): (cc, nc, tt, ct, callers)}`` to ``path``.

    ``pstats.Stats(path)`` loads it back; the bytes are those of ``dump_stats`` (marshal).
    """
    pstats.Stats(_Snapshot(stats)).dump_stats(os.fspath(path))  # type: ignore[arg-type]
