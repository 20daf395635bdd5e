"""Callgrind profile format (kcachegrind, qcachegrind) from a calls profile.

One block per function: ``fl=`` its file, ``fn=`` its name, a cost line ``<line> <own ns>``,
then per callee ``cfl=``/``cfn=``, ``calls=<count> <callee line>`` and the inclusive cost of those
calls. Names are compressed (``(id) name`` the first time, ``(id)`` after), as the format allows.
cProfile does not record call sites, so costs sit on the function's first line. Spec:
https://valgrind.org/docs/manual/cl-format.html
"""

from __future__ import annotations

from collections.abc import Iterable

from profilers.callgraph import CallGraph, FunctionCalls

EVENT = "ns"


def render(graph: CallGraph, title: str | None = None) -> str:
    """The graph as a callgrind file; ``cmd:`` is the graph's name (``title`` is not stored)."""
    return callgrind_text(graph.functions.values(), graph.name)


def callgrind_text(functions: Iterable[FunctionCalls], command: str = "") -> str:
    funcs = {f.key: f for f in functions}
    files: dict[str, int] = {}
    names: dict[str, int] = {}

    def ref(table: dict[str, int], value: str) -> str:
        if value in table:
            return f"({table[value]})"
        table[value] = len(table) + 1
        return f"({table[value]}) {value}"

    def file_of(f: FunctionCalls) -> str:
        return f.frame.file or "<built-in>"

    def name_of(f: FunctionCalls) -> str:
        # Unique per function (kcachegrind merges equal names): "fib a.py:3".
        if not f.frame.file:
            return f.frame.function
        return f"{f.frame.function} {f.frame.short_file}:{f.frame.line}"

    lines = [
        "# callgrind format",
        "version: 1",
        "creator: vmtop (cProfile)",
    ]
    if command:
        lines.append(f"cmd: {command}")
    lines += [
        "positions: line",
        f"event: {EVENT} : Time (nanoseconds)",
        f"events: {EVENT}",
        f"summary: {sum(_ns(f.own) for f in funcs.values())}",
        "",
    ]
    for f in funcs.values():
        lines.append(f"fl={ref(files, file_of(f))}")
        lines.append(f"fn={ref(names, name_of(f))}")
        lines.append(f"{f.frame.line} {_ns(f.own)}")
        for callee_key, edge in f.callees.items():
            callee = funcs.get(callee_key)
            if callee is None:
                continue
            lines.append(f"cfl={ref(files, file_of(callee))}")
            lines.append(f"cfn={ref(names, name_of(callee))}")
            lines.append(f"calls={edge.calls} {callee.frame.line}")
            lines.append(f"{f.frame.line} {_ns(edge.acc)}")
        lines.append("")
    return "\n".join(lines)


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)
