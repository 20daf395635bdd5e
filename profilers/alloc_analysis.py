"""Fast aggregation of ``tracemalloc`` snapshots: top sites, growth between two, stack model.

Everything here takes a :class:`tracemalloc.Snapshot` (which pickles fine), never the live
module state, so a snapshot taken in a target process can be analysed in another one::

    agg = aggregate(snapshot)                    # one pass over the raw traces
    agg.top(by="bytes", group="line", limit=10)  # also by="count"; group="function" / "file"
    agg.stack_model()                            # unit "bytes", stacks root-first
    growth(before, after, group="line")          # sites that grew between two snapshots

``Snapshot.statistics()`` and ``compare_to()`` build a ``Traceback`` object per trace and
hash it in Python. Here the raw trace tuples ``(domain, size, traceback, total_nframe)`` (the
layout of ``Snapshot.traces._traces`` on CPython 3.11-3.13; the traceback is a tuple of
``(filename, lineno)``, most recent call first) are summed per traceback object first:
``_tracemalloc`` hands out one tuple per distinct traceback, and pickle keeps that sharing.
Only the distinct tracebacks are then fanned out to line / function / file keys.

Function names: tracemalloc keeps only file and line, so the enclosing ``def`` is found by
parsing each file once with :mod:`ast` (cached); files without source fall back to
``file:line``.
"""

from __future__ import annotations

import ast
import gc
import linecache
import os
import runpy
import sys
import sysconfig
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from profilers.stacks import Frame, StackModel

__all__ = [
    "OWN_FILES",
    "Aggregate",
    "FunctionNames",
    "Site",
    "SiteDiff",
    "aggregate",
    "growth",
]

By = Literal["bytes", "count"]
Group = Literal["line", "function", "file"]
RawFrame: TypeAlias = tuple[str, int]
RawTraceback: TypeAlias = tuple[RawFrame, ...]
_UNKNOWN: RawFrame = ("<unknown>", 0)
GROUPS: tuple[str, ...] = ("line", "function", "file")
BYS: tuple[str, ...] = ("bytes", "count")

_PROFILERS_DIR = os.path.dirname(os.path.abspath(__file__))
#: Path prefixes of vmtop's own code (and tracemalloc's): their frames are the recorder, not the
#: program. A trace allocated in one is dropped; stacks are cut below the last one.
OWN_FILES: tuple[str, ...] = (
    _PROFILERS_DIR + os.sep,
    os.path.join(os.path.dirname(_PROFILERS_DIR), "vmtop") + os.sep,
    os.path.abspath(tracemalloc.__file__),
)
_RUNPY = frozenset(("<frozen runpy>", os.path.abspath(runpy.__file__ or "runpy.py")))


@dataclass(frozen=True, slots=True)
class Site:
    """Traced memory at one site: a line, a function or a file (``line`` 0, ``function`` "")."""

    file: str
    line: int
    function: str
    size: int
    count: int

    @property
    def average(self) -> float:
        return self.size / self.count if self.count else 0.0


@dataclass(frozen=True, slots=True)
class SiteDiff:
    """A site in two snapshots: its size and count in the newer one, and the change."""

    file: str
    line: int
    function: str
    size: int
    count: int
    size_diff: int
    count_diff: int


class FunctionNames:
    """Map ``(filename, lineno)`` to the qualified name of the enclosing ``def``/``class``.

    Each file is parsed once (``linecache`` + :mod:`ast`) into a line -> name table; the cache
    is checked against the file's mtime and size. Lines outside any def are ``<module>``.
    """

    def __init__(self) -> None:
        self._tables: dict[str, tuple[tuple[int, int] | None, list[str] | None]] = {}
        self._checked: set[str] = set()

    def refresh(self) -> None:
        """Re-check files against the disk on their next lookup (each analysis starts here)."""
        self._checked.clear()

    def name(self, filename: str, lineno: int) -> str | None:
        table = self._table(filename)
        if table is None or not 0 < lineno <= len(table):
            return None
        return table[lineno - 1]

    def _table(self, filename: str) -> list[str] | None:
        cached = self._tables.get(filename)
        if cached is not None and filename in self._checked:
            return cached[1]
        self._checked.add(filename)
        try:
            st = os.stat(filename)
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except (OSError, ValueError):
            stamp = None
        if cached is not None and cached[0] == stamp:
            return cached[1]
        if stamp is not None:
            linecache.checkcache(filename)
            lines = linecache.getlines(filename)
        else:
            source = _frozen_source(filename)
            lines = linecache.getlines(source) if source else []
        table = _name_table(lines)
        self._tables[filename] = (stamp, table)
        return table


def _frozen_source(filename: str) -> str | None:
    """The stdlib file behind ``<frozen importlib._bootstrap>`` (frozen at build time)."""
    if not (filename.startswith("<frozen ") and filename.endswith(">")):
        return None
    module = filename[len("<frozen ") : -1]
    path = getattr(sys.modules.get(module), "__file__", None)
    if isinstance(path, str) and os.path.isfile(path):
        return path
    base = os.path.join(sysconfig.get_paths()["stdlib"], *module.split("."))
    for candidate in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")


def _statements(node: ast.AST) -> Iterator[ast.AST]:
    """The statements nested in ``node`` (a def can only be a statement: skip expressions)."""
    for field in _BLOCKS:
        block = getattr(node, field, None)
        if isinstance(block, list):
            yield from block


def _name_table(lines: list[str]) -> list[str] | None:
    if not lines:
        return None
    try:
        tree = ast.parse("".join(lines))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    table = ["<module>"] * len(lines)
    todo: list[tuple[ast.AST, str]] = [(tree, "")]
    while todo:  # outer scopes are filled before the scopes they contain
        node, prefix = todo.pop()
        for child in _statements(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                qualname = prefix + child.name
                end = child.end_lineno or child.lineno
                table[child.lineno - 1 : end] = [qualname] * (end - child.lineno + 1)
                inner = ".<locals>." if not isinstance(child, ast.ClassDef) else "."
                todo.append((child, qualname + inner))
            else:
                todo.append((child, prefix))
    return table


#: Shared by every analysis in this process (the tables only depend on the files).
FUNCTION_NAMES = FunctionNames()


class Aggregate:
    """Traced memory of one snapshot summed per distinct traceback; groupings derive from it.

    Traces allocated in an excluded file are not counted. ``tracebacks``, ``sizes`` and
    ``counts`` are parallel lists, one item per distinct traceback object (most recent frame
    first); ``stacks`` merges equal tracebacks into a dict; ``groups()`` sums per line,
    function or file. (Parallel lists of ints, not a tuple per traceback: half a million more
    container objects would make the next full collection walk them all.)
    """

    def __init__(
        self,
        tracebacks: list[RawTraceback],
        sizes: list[int],
        counts: list[int],
        traceback_limit: int,
        exclude: tuple[str, ...],
        names: FunctionNames,
        by_leaf: dict[RawFrame, list[int]] | None = None,
    ) -> None:
        self.tracebacks = tracebacks
        self.sizes = sizes
        self.counts = counts
        self.traceback_limit = traceback_limit
        self.exclude = exclude
        self._names = names
        self._by_leaf = _by_leaf(self.entries) if by_leaf is None else by_leaf
        #: Traced bytes and live blocks, excluded traces left out.
        self.size = sum(v[0] for v in self._by_leaf.values())
        self.count = sum(v[1] for v in self._by_leaf.values())
        self._stacks: dict[RawTraceback, list[int]] | None = None
        self._groups: dict[str, dict[tuple[str, int, str], list[int]]] = {}

    @property
    def entries(self) -> Iterator[tuple[RawTraceback, int, int]]:
        """``(traceback, bytes, count)`` per distinct traceback object."""
        return zip(self.tracebacks, self.sizes, self.counts, strict=True)

    @property
    def stacks(self) -> dict[RawTraceback, list[int]]:
        """Raw traceback (most recent frame first) -> ``[bytes, count]``."""
        if self._stacks is None:
            stacks: dict[RawTraceback, list[int]] = {}
            for tb, size, count in self.entries:
                entry = stacks.get(tb)
                if entry is None:
                    stacks[tb] = [size, count]
                else:
                    entry[0] += size
                    entry[1] += count
            self._stacks = stacks
        return self._stacks

    def function_name(self, filename: str, lineno: int) -> str:
        return self._names.name(filename, lineno) or f"{os.path.basename(filename)}:{lineno}"

    def groups(self, group: Group = "line") -> dict[tuple[str, int, str], list[int]]:
        """``(file, line, function) -> [bytes, count]`` for the group (unused parts 0 / "")."""
        if group not in GROUPS:
            raise ValueError(f"group must be one of {', '.join(GROUPS)}, not {group!r}")
        cached = self._groups.get(group)
        if cached is not None:
            return cached
        out: dict[tuple[str, int, str], list[int]] = {}
        for (file, line), (size, count) in self._by_leaf.items():
            if group == "line":
                key = (file, line, self.function_name(file, line))
            elif group == "function":
                key = (file, 0, self.function_name(file, line))
            else:
                key = (file, 0, "")
            entry = out.get(key)
            if entry is None:
                out[key] = [size, count]
            else:
                entry[0] += size
                entry[1] += count
        self._groups[group] = out
        return out

    def sites(self, group: Group = "line") -> Iterator[Site]:
        for (file, line, function), (size, count) in self.groups(group).items():
            yield Site(file, line, function, size, count)

    def top(self, by: By = "bytes", group: Group = "line", limit: int | None = 10) -> list[Site]:
        """The biggest sites by bytes or by count (ties: the other measure, then the name)."""
        if by not in BYS:
            raise ValueError(f"by must be 'bytes' or 'count', not {by!r}")
        key = _bytes_order if by == "bytes" else _count_order
        ordered = sorted(self.sites(group), key=key)
        return ordered if limit is None else ordered[:limit]

    def stack_model(
        self, by: By = "bytes", name: str = "allocations", outer: tuple[RawFrame, ...] = ()
    ) -> StackModel:
        """Root-first stacks weighted by bytes (unit "bytes") or by live blocks (unit "count").

        Consecutive frames at the same line are shown once (a comprehension or generator
        expression frame and its caller). Frames up to the last one in an excluded file or in
        ``runpy`` are cut (the recorder and whatever called it, the runner of a script).
        ``outer``: the ``(file, line)`` frames that called the measured code, most recent
        first (a ``with`` block's callers: a REPL, a notebook kernel); they are cut too.
        """
        if by not in BYS:
            raise ValueError(f"by must be 'bytes' or 'count', not {by!r}")
        model = StackModel(unit="bytes" if by == "bytes" else "count", name=name)
        ids = _FrameIds(model, self.function_name, self.exclude)
        get_id = ids.__getitem__
        own_ids = ids.own
        by_bytes = by == "bytes"
        for tb, size, count in self.entries:
            weight = size if by_bytes else count
            if not weight:
                continue
            if outer and outer[0] in tb:
                tb = _cut_outer(tb, outer)
            root_first = tuple(map(get_id, reversed(tb or (_UNKNOWN,))))
            if len(set(root_first)) < len(root_first):
                root_first = _squash(root_first)
            if own_ids and not own_ids.isdisjoint(root_first):
                root_first = _cut(root_first, own_ids)
            model.add_ids(root_first, weight)
        return _compact(model) if own_ids else model


def _cut_outer(tb: RawTraceback, outer: tuple[RawFrame, ...]) -> RawTraceback:
    """``tb`` without its root-side frames when they are the (possibly truncated) ``outer``."""
    at = tb.index(outer[0])
    if at > 0 and tb[at:] == outer[: len(tb) - at]:
        return tb[:at]
    return tb


def _by_leaf(entries: Iterable[tuple[RawTraceback, int, int]]) -> dict[RawFrame, list[int]]:
    by_leaf: dict[RawFrame, list[int]] = {}
    get = by_leaf.get
    for tb, size, count in entries:
        leaf = tb[0] if tb else _UNKNOWN
        entry = get(leaf)
        if entry is None:
            by_leaf[leaf] = [size, count]
        else:
            entry[0] += size
            entry[1] += count
    return by_leaf


def _bytes_order(site: Site) -> tuple[int, int, str, int, str]:
    return (-site.size, -site.count, site.file, site.line, site.function)


def _count_order(site: Site) -> tuple[int, int, str, int, str]:
    return (-site.count, -site.size, site.file, site.line, site.function)


class _FrameIds(dict[RawFrame, int]):
    """``(filename, lineno) -> frame index`` of a model, resolving names on first sight."""

    def __init__(
        self, model: StackModel, name_of: Callable[[str, int], str], exclude: tuple[str, ...]
    ) -> None:
        super().__init__()
        self.model = model
        self.name_of = name_of
        self.exclude = exclude
        self.own: set[int] = set()

    def __missing__(self, raw: RawFrame) -> int:
        file, line = raw
        index = self.model.frame_id(Frame(self.name_of(file, line), file, line))
        self[raw] = index
        if file in _RUNPY or _excluded(file, self.exclude):
            self.own.add(index)
        return index


def _compact(model: StackModel) -> StackModel:
    """The model without frames no stack uses (the cut ones)."""
    used = sorted({i for ids in model.stacks for i in ids})
    if len(used) == len(model.frames):
        return model
    out = StackModel(unit=model.unit, name=model.name, frames=[model.frames[i] for i in used])
    remap = dict(zip(used, range(len(used)), strict=True))
    get = remap.__getitem__
    for ids, weight in model.stacks.items():
        out.add_ids(tuple(map(get, ids)), weight)
    return out


def _squash(ids: tuple[int, ...]) -> tuple[int, ...]:
    # A comprehension (3.11) or generator expression runs in its own frame on the same line as
    # its caller, which the name table resolves to the same function: show that frame once.
    return tuple(i for i, prev in zip(ids, (-1, *ids), strict=False) if i != prev)


def _cut(root_first: tuple[int, ...], own: set[int]) -> tuple[int, ...]:
    last = max(i for i, f in enumerate(root_first) if f in own)
    # A trace allocated right in a cut frame (runpy compiling the script) keeps its leaf.
    return root_first[last + 1 :] or root_first[-1:]


def _excluded(filename: str, exclude: tuple[str, ...]) -> bool:
    return bool(exclude) and filename.startswith(exclude)


def aggregate(
    snapshot: tracemalloc.Snapshot,
    exclude: Iterable[str] = OWN_FILES,
    names: FunctionNames | None = None,
) -> Aggregate:
    """Sum a snapshot's traces per traceback object, in one pass over the raw trace tuples.

    ``exclude``: path prefixes (files or directories ending in ``os.sep``) whose allocations are
    not counted (by default vmtop's own and tracemalloc's); ``()`` counts every trace, as
    ``Snapshot.statistics()`` does.
    """
    prefixes = tuple(exclude)
    raw = _raw_traces(snapshot)
    enabled = gc.isenabled()
    # The pass allocates one small list per distinct traceback: a full collection walking the
    # snapshot's million tuples each time costs more than the pass. Nothing here makes cycles.
    gc.disable()
    try:
        by_id: dict[int, list[Any]] = {}
        get = by_id.get
        for _, size, tb, _ in raw:
            key = id(tb)
            entry = get(key)
            if entry is None:
                by_id[key] = [tb, size, 1]
            else:
                entry[1] += size
                entry[2] += 1
        tracebacks: list[RawTraceback] = []
        sizes: list[int] = []
        counts: list[int] = []
        by_leaf: dict[RawFrame, list[int]] = {}
        leaf_get = by_leaf.get
        own: dict[str, bool] = {}
        for tb, size, count in by_id.values():
            leaf = tb[0] if tb else _UNKNOWN
            if prefixes:
                is_own = own.get(leaf[0])
                if is_own is None:
                    is_own = own[leaf[0]] = _excluded(leaf[0], prefixes)
                if is_own:
                    continue
            tracebacks.append(tb)
            sizes.append(size)
            counts.append(count)
            entry = leaf_get(leaf)
            if entry is None:
                by_leaf[leaf] = [size, count]
            else:
                entry[0] += size
                entry[1] += count
        del by_id
        names = names or FUNCTION_NAMES
        names.refresh()
        result = Aggregate(
            tracebacks, sizes, counts, snapshot.traceback_limit, prefixes, names, by_leaf
        )
    finally:
        if enabled:
            gc.enable()
    return result


def _raw_traces(snapshot: tracemalloc.Snapshot) -> list[tuple[int, int, RawTraceback, int]]:
    """``(domain, size, traceback, total_nframe)`` tuples; the public API as a fallback."""
    traces = snapshot.traces
    raw = getattr(traces, "_traces", None)
    if isinstance(raw, list):
        return raw
    return [trace._trace for trace in traces]  # type: ignore[attr-defined]


def growth(
    before: tracemalloc.Snapshot | Aggregate,
    after: tracemalloc.Snapshot | Aggregate,
    group: Group = "line",
    exclude: Iterable[str] = OWN_FILES,
) -> list[SiteDiff]:
    """Sites whose traced memory changed from ``before`` to ``after``, most grown first.

    New and grown sites come first (leak hunting); shrunk and freed sites follow, most freed
    last. Snapshots are aggregated with ``exclude``; aggregates are used as they are.
    """
    old = before if isinstance(before, Aggregate) else aggregate(before, exclude)
    new = after if isinstance(after, Aggregate) else aggregate(after, exclude)
    old_groups = old.groups(group)
    new_groups = new.groups(group)
    out: list[SiteDiff] = []
    for key, (size, count) in new_groups.items():
        was = old_groups.get(key, (0, 0))
        if size != was[0] or count != was[1]:
            out.append(SiteDiff(*key, size, count, size - was[0], count - was[1]))
    for key, (size, count) in old_groups.items():
        if key not in new_groups:
            out.append(SiteDiff(*key, 0, 0, -size, -count))
    out.sort(key=lambda d: (-d.size_diff, -d.count_diff, d.file, d.line, d.function))
    return out
