"""The call-graph model: per-function counts and times with caller/callee edges (cProfile's data).

A leaf module, like :mod:`profilers.stacks`: the cProfile recorder (:mod:`profilers.calls`), the
calls report (:mod:`profilers.calls_report`), the pstats and callgrind writers and the live job
that ships a calls profile all import it, never each other.

The raw form is the pstats dict (what ``cProfile.Profile.dump_stats`` writes)::

    {(file, first line, function): (primitive calls, calls, own, acc, {caller key: edge})}

where an edge is cProfile's ``(calls, primitive calls, own, acc)`` of the callee in the calls made
by that caller. :class:`CallGraph` reads it into :class:`FunctionCalls` with :class:`CallEdge`s.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from profilers.stacks import Frame, StackModel

PstatsKey = tuple[str, int, str]  # (file, first line, function), "~" file for builtins
PstatsDict = dict[PstatsKey, tuple[int, int, float, float, dict[PstatsKey, tuple[Any, ...]]]]

#: The profiler's own entry points, seen as builtins called while it is enabled.
PROFILER_BUILTINS = frozenset(
    (
        "<method 'enable' of '_lsprof.Profiler' objects>",
        "<method 'disable' of '_lsprof.Profiler' objects>",
    )
)


def is_profiler_builtin(key: PstatsKey) -> bool:
    """True for cProfile's own enable/disable, which every profile of a running program holds."""
    return key[0] == "~" and key[2] in PROFILER_BUILTINS


@dataclass(slots=True)
class CallEdge:
    """Calls from one function to another: the callee's counts and times in those calls."""

    calls: int
    primitive: int
    own: float
    acc: float


@dataclass(slots=True)
class FunctionCalls:
    """One function: CNT (``calls``, ``primitive`` = non-recursive), ACC and OWN (seconds)."""

    key: PstatsKey
    frame: Frame
    calls: int
    primitive: int
    own: float
    acc: float
    callers: dict[PstatsKey, CallEdge] = field(default_factory=dict)
    callees: dict[PstatsKey, CallEdge] = field(default_factory=dict)

    @classmethod
    def from_pstats_key(
        cls, key: PstatsKey, calls: int, primitive: int, own: float, acc: float
    ) -> FunctionCalls:
        return cls(key, frame_of(key), calls, primitive, own, acc)

    @property
    def recursive(self) -> bool:
        return self.calls != self.primitive


def frame_of(key: PstatsKey) -> Frame:
    file, line, function = key
    if file == "~":  # builtins: "<built-in method time.sleep>", "<method 'append' of ...>"
        return Frame(function)
    return Frame(function, file, line)


def functions_from_stats(stats: PstatsDict) -> dict[PstatsKey, FunctionCalls]:
    """Per-function CNT/ACC/OWN plus caller and callee edges, from a pstats dict."""
    functions = {
        key: FunctionCalls.from_pstats_key(key, calls=nc, primitive=cc, own=tt, acc=ct)
        for key, (cc, nc, tt, ct, _callers) in stats.items()
    }
    for key, (*_, callers) in stats.items():
        callee = functions[key]
        for caller_key, values in callers.items():
            caller = functions.get(caller_key)
            if caller is None:
                continue
            nc, cc, tt, ct = values[:4]
            edge = CallEdge(calls=nc, primitive=cc, own=tt, acc=ct)
            callee.callers[caller_key] = edge
            caller.callees[key] = edge
    return functions


def filter_stats(stats: PstatsDict, hide_files: Collection[str]) -> PstatsDict:
    """Drop entries (and the edges to/from them) of hidden files and of the profiler itself."""

    def hidden(key: PstatsKey) -> bool:
        return key[0] in hide_files or is_profiler_builtin(key)

    out: PstatsDict = {}
    for key, (cc, nc, tt, ct, callers) in stats.items():
        if hidden(key):
            continue
        kept = {caller: edge for caller, edge in callers.items() if not hidden(caller)}
        out[key] = (cc, nc, tt, ct, kept)
    return out


class CallGraph:
    """A pstats dict read as functions and edges: what the pstats and callgrind writers take.

    ``stats`` is the dict itself (the pstats writer writes it as is); ``functions`` the same data
    as :class:`FunctionCalls`, built once; ``name`` what was profiled (callgrind's ``cmd:``).
    """

    __slots__ = ("stats", "functions", "name")

    def __init__(self, stats: PstatsDict, name: str = "profile") -> None:
        self.stats = stats
        self.functions = functions_from_stats(stats)
        self.name = name


def approximate_stacks(
    functions: Iterable[FunctionCalls],
    name: str = "profile",
    max_depth: int = 128,
    max_nodes: int = 200_000,
    min_share: float = 1e-5,
) -> StackModel:
    """Stacks (seconds) rebuilt from the caller/callee graph, an approximation.

    cProfile records edges (who called whom, and the callee's time in those calls), not stacks.
    Walking down from the functions nobody profiled called, a function's time is split between
    its callers in proportion to the callee's cumulative time in each caller's calls (exact for
    one level, an assumption beyond: the split is taken to be the same whatever called the
    caller). A recursive call is folded into the frame that is already on the stack. Branches
    under ``min_share`` of the total are dropped.
    """
    funcs = {f.key: f for f in functions}
    model = StackModel(unit="seconds", name=name)
    total_own = sum(f.own for f in funcs.values())
    if not total_own:
        return model
    min_weight = min_share * total_own
    # How much of each function's time came through each caller (self-calls excluded).
    incoming = {
        key: sum(e.acc for k, e in f.callers.items() if k != key) for key, f in funcs.items()
    }
    nodes = 0
    for key, f in funcs.items():
        if not f.acc:
            continue
        root_share = max(0.0, 1.0 - incoming[key] / f.acc) if f.callers else 1.0
        if root_share * f.acc < min_weight:
            continue
        # Depth-first without recursion: (path of keys, share of this function's time)
        todo: list[tuple[tuple[PstatsKey, ...], float]] = [((key,), root_share)]
        while todo and nodes < max_nodes:
            path, share = todo.pop()
            nodes += 1
            current = funcs[path[-1]]
            model.add([funcs[k].frame for k in path], share * current.own)
            if len(path) >= max_depth:
                continue
            for callee_key, edge in current.callees.items():
                callee = funcs.get(callee_key)
                if callee is None or callee_key in path or not incoming[callee_key]:
                    continue
                child_share = share * edge.acc / incoming[callee_key]
                if child_share * callee.acc >= min_weight:
                    todo.append(((*path, callee_key), child_share))
    return model


def splice_out(
    stats: PstatsDict, hidden: Collection[PstatsKey], wrappers: Collection[PstatsKey] = ()
) -> PstatsDict:
    """Leave the ``hidden`` functions out of a pstats dict, splicing out the ``wrappers``.

    A wrapper (one of the hidden functions that calls the program's own code: a hook around a
    task step, say) is spliced out: its callees keep the wrapper's callers (its main caller
    that is not hidden). Functions only hidden code called are left out with it, so what stays
    is the program as it would have been profiled without the wrappers.
    """
    hidden = set(hidden)
    wrappers = set(wrappers) & hidden

    def outer_callers(key: PstatsKey, seen: set[PstatsKey]) -> list[Any]:
        # The callers of a wrapper that are not wrappers themselves, most calls first.
        out = []
        for caller, values in stats[key][4].items():
            if caller in wrappers and caller not in seen:
                seen.add(caller)
                out.extend(outer_callers(caller, seen))
            elif caller not in hidden:
                out.append((values[0], caller))
        return sorted(out, key=lambda item: -item[0])

    removed = hidden - wrappers
    changed = True
    while changed:
        changed = False
        for key, (*_, callers) in stats.items():
            if (
                key not in hidden
                and key not in removed
                and callers
                and all(c in removed for c in callers)
            ):
                removed.add(key)
                changed = True
    out: PstatsDict = {}
    for key, (cc, nc, tt, ct, callers) in stats.items():
        if key in hidden or key in removed:
            continue
        kept: dict[PstatsKey, tuple[Any, ...]] = {}
        for caller, values in callers.items():
            if caller in wrappers:
                outer = outer_callers(caller, {caller})
                if outer:  # the wrapper's main caller now calls this function directly
                    _add_edge(kept, outer[0][1], values)
            elif caller not in hidden and caller not in removed:
                _add_edge(kept, caller, values)
        out[key] = (cc, nc, tt, ct, kept)
    return out


def _add_edge(
    edges: dict[PstatsKey, tuple[Any, ...]], caller: PstatsKey, values: tuple[Any, ...]
) -> None:
    previous = edges.get(caller)
    edges[caller] = (
        values if previous is None else tuple(a + b for a, b in zip(previous, values, strict=True))
    )
