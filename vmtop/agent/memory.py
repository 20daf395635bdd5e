"""A cheap, explainable memory estimate for one process (computed only for rows shown).

CPython has no per-task heap. The estimate is the shallow size (``sys.getsizeof``) of the
objects reachable from the process's suspended frames — the frames themselves, their locals,
and what those refer to, ``DEPTH`` references deep — plus the items in its mailbox. The walk
is bounded (``BUDGET`` objects; larger containers are sampled and extrapolated), modules,
classes and functions are not followed, and an object reachable from two processes counts in
both. It answers "which task holds the big structure", not "how many bytes would freeing it
return": exact per-site bytes come from the allocation report.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import sys
import types
from collections.abc import Iterable
from typing import Any

from vmtop.agent.objects import attribute_values

DEPTH = 3
BUDGET = 20_000
NOTE = (
    "CPython has no per-task heap. This estimate is the shallow size (sys.getsizeof) of the "
    f"objects reachable from the process's suspended frames, {DEPTH} references deep, plus the "
    f"items in its mailbox; the walk stops at {BUDGET:,} objects, samples large containers and "
    "extrapolates, does not follow modules, classes or functions, and counts an object shared "
    "by two processes in both. It tells which process holds the big structure, not how many "
    "bytes freeing it would return: exact per-line bytes come from the allocation report."
)
SAMPLE = 256  # items of a large container that are looked at; the rest extrapolated

_SKIP = (
    types.ModuleType,
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.CodeType,
    types.MethodType,
    types.FrameType,
)
_ATOMS = (int, float, complex, bool, str, bytes, bytearray, type(None))
_QUEUES = (asyncio.Queue, queue.Queue)


def estimate(roots: Iterable[Any], frames: Iterable[types.FrameType]) -> int:
    """Estimated bytes held by ``frames`` (their locals) and ``roots`` (e.g. mailbox queues)."""
    seen: set[int] = set()
    total = 0
    work: list[tuple[Any, int, float]] = []  # (object, depth, multiplier)
    for frame in frames:
        total += sys.getsizeof(frame)
        try:
            local_values = list(frame.f_locals.values())
        except Exception:
            continue
        work.extend((v, 1, 1.0) for v in local_values)
    work.extend((r, 1, 1.0) for r in roots)
    budget = BUDGET
    while work and budget > 0:
        obj, depth, mult = work.pop()
        if id(obj) in seen or isinstance(obj, _SKIP):
            continue
        seen.add(id(obj))
        budget -= 1
        try:
            total += int(sys.getsizeof(obj) * mult)
        except Exception:
            continue
        if depth >= DEPTH + 1 or isinstance(obj, _ATOMS):
            continue
        children, scale = _children(obj)
        work.extend((c, depth + 1, mult * scale) for c in children)
    return total


def _children(obj: Any) -> tuple[list[Any], float]:
    """Objects ``obj`` refers to (a sample of them for big containers) and the scale factor."""
    container: Any
    if isinstance(obj, dict):
        container = obj.values()
    elif isinstance(obj, list | tuple | set | frozenset):
        container = obj
    elif isinstance(obj, _QUEUES):
        container = getattr(obj, "_queue", ())
    else:
        try:
            container = attribute_values(obj)
        except Exception:
            return [], 1.0
    try:
        n = len(container)
        items = list(itertools.islice(container, SAMPLE))
    except Exception:
        return [], 1.0
    return items, (n / len(items) if n > len(items) and items else 1.0)
