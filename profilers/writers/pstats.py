"""pstats files (what ``cProfile.Profile.dump_stats`` writes): for pstats, snakeviz, tuna."""

from __future__ import annotations

import marshal

from profilers.callgraph import CallGraph


def render(graph: CallGraph, title: str | None = None) -> bytes:
    """The graph's pstats dict ``{(file, line, function): (cc, nc, tt, ct, callers)}`` as the
    bytes ``dump_stats`` writes (marshal); ``pstats.Stats(path)`` loads them back. ``title`` is
    not stored."""
    return marshal.dumps(graph.stats)
