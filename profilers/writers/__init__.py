"""The exporter registry: every output format vmtop writes, registered once.

Each :class:`Exporter` names a format, the file suffixes that select it, the model it takes (a
:class:`~profilers.stacks.StackModel` for flamegraphs, a :class:`~profilers.callgraph.CallGraph`
for pstats and callgrind) and the writer module that renders that model. Reports and the CLI
ask the registry, never a list of their own (as py-spy's ``FileFormat`` and pyinstrument's
renderers with their ``output_file_extension``)::

    exporter = exporter_for("out.callgrind")      # Exporter(name="callgrind", model=CallGraph, ...)
    fmt = format_for("out.speedscope.json")        # "speedscope" (flamegraph formats only)
    text = render(model, fmt, title="my run")
    save(model, "out.svg")                         # -> "svg"

A writer is a module with ``render(model, title) -> str | bytes``; adding a format is a new
module and one line in :data:`EXPORTERS`, and never touches a recorder or a command.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profilers.callgraph import CallGraph
from profilers.stacks import StackModel

Model = StackModel | CallGraph


@dataclass(frozen=True, slots=True)
class Exporter:
    """One output format: its name, the suffixes that select it, the model it takes, its writer."""

    name: str
    suffixes: tuple[str, ...]  # the first is the one help texts name
    model: type[StackModel] | type[CallGraph]
    module: str  # profilers.writers.<name>: render(model, title) -> str | bytes
    description: str
    prefixes: tuple[str, ...] = ()  # file names that select it whatever their suffix
    opens_with: str = ""  # a hint for --help lists: "interactive flamegraph", "kcachegrind"

    @property
    def needs(self) -> str:
        """What a report must have to be written in this format (for error messages)."""
        return "call counts" if self.model is CallGraph else "stacks"

    def render(self, model: Model, title: str | None = None) -> str | bytes:
        if not isinstance(model, self.model):
            raise TypeError(f"{self.name} output takes a {self.model.__name__}")
        # Imported when used: most runs write one format, and the writers import nothing else.
        writer: Any = importlib.import_module(self.module)
        result: str | bytes = writer.render(model, title)
        return result

    def save(self, model: Model, path: str | os.PathLike[str], title: str | None = None) -> None:
        """Write ``model`` to ``path`` (atomically: see :func:`write_atomic`)."""
        write_atomic(Path(path), self.render(model, title))

    def matches(self, name: str) -> str | None:
        """The suffix (or prefix) of file name ``name`` (lower case) that selects this format."""
        for suffix in self.suffixes:
            if name.endswith(suffix) and len(name) > len(suffix):
                return suffix
        return next((p for p in self.prefixes if name.startswith(p)), None)


#: Every format, flamegraphs first (the order of help texts).
EXPORTERS: tuple[Exporter, ...] = (
    Exporter(
        "svg",
        (".svg",),
        StackModel,
        "profilers.writers.svg",
        "interactive SVG flamegraph (zoom, search, tooltips); open in a browser",
        opens_with="interactive flamegraph",
    ),
    Exporter(
        "speedscope",
        (".speedscope.json", ".json"),
        StackModel,
        "profilers.writers.speedscope",
        "speedscope JSON; open at https://www.speedscope.app or `speedscope FILE`",
    ),
    Exporter(
        "folded",
        (".folded", ".collapsed"),
        StackModel,
        "profilers.writers.folded",
        "folded stacks 'a;b;c 42', one stack a line (flamegraph.pl, inferno, speedscope)",
    ),
    Exporter(
        "html",
        (".html",),
        StackModel,
        "profilers.writers.html",
        "HTML page: the SVG flamegraph plus a sortable table of the top functions",
    ),
    Exporter(
        "pstats",
        (".pstats", ".prof"),
        CallGraph,
        "profilers.writers.pstats",
        "pstats file (python -m pstats, snakeviz, tuna)",
        opens_with="pstats, snakeviz",
    ),
    Exporter(
        "callgrind",
        (".callgrind",),
        CallGraph,
        "profilers.writers.callgrind",
        "callgrind file (kcachegrind, qcachegrind)",
        prefixes=("callgrind.out",),
        opens_with="kcachegrind",
    ),
)

_BY_NAME = {exporter.name: exporter for exporter in EXPORTERS}

#: Names of the flamegraph formats (those that take a StackModel), accepted by :func:`render`.
FORMAT_NAMES = tuple(e.name for e in EXPORTERS if e.model is StackModel)

#: Flamegraph file suffix -> what the file is.
FORMATS: dict[str, str] = {
    suffix: e.description if n == 0 else f"same as {e.suffixes[0]}"
    for e in EXPORTERS
    if e.model is StackModel
    for n, suffix in enumerate(e.suffixes)
}


def suffix_list(model: type[StackModel] | type[CallGraph]) -> list[str]:
    """The first suffix of each format that takes ``model``, in registry order."""
    return [e.suffixes[0] for e in EXPORTERS if e.model is model]


def help_list(model: type[StackModel] | type[CallGraph]) -> str:
    """``.svg (interactive flamegraph), .speedscope.json, ...``: the formats taking ``model``,
    for a command's --help."""
    return ", ".join(
        f"{e.suffixes[0]} ({e.opens_with})" if e.opens_with else e.suffixes[0]
        for e in EXPORTERS
        if e.model is model
    )


def _help() -> str:
    *head, last = suffix_list(StackModel)
    return f"use {', '.join(head)} or {last}"


def exporter_named(name: str) -> Exporter:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown output format {name!r}") from None


def exporter_for(
    path: str | os.PathLike[str], model: type[StackModel] | type[CallGraph] | None = None
) -> Exporter:
    """The format an output path names (among those taking ``model``, or all).

    Longest suffixes are matched first (``.speedscope.json`` before ``.json``). A suffix nobody
    registered raises ``ValueError`` with a one-line message fit for a CLI, naming the
    flamegraph formats (every report can write one).
    """
    name = Path(path).name.lower()
    candidates = [e for e in EXPORTERS if model is None or e.model is model]
    matched = [(e, s) for e in candidates if (s := e.matches(name)) is not None]
    if matched:
        return max(matched, key=lambda item: len(item[1]))[0]
    suffix = Path(name).suffix
    if not suffix:
        raise ValueError(f"no output format suffix in '{Path(path).name}': {_help()}")
    raise ValueError(f"unknown output format '{suffix}': {_help()}")


def format_for(path: str | os.PathLike[str]) -> str:
    """The flamegraph format name (``svg``, ``speedscope``, ``folded``, ``html``) of a path.

    Unknown suffixes (and those of formats that need call counts) raise ``ValueError`` with a
    one-line message fit for a CLI.
    """
    return exporter_for(path, StackModel).name


def render(model: StackModel, fmt: str, title: str | None = None) -> str:
    """The model as text in flamegraph format ``fmt`` (a name from :data:`FORMAT_NAMES`)."""
    if fmt not in FORMAT_NAMES:
        raise ValueError(f"unknown flamegraph format {fmt!r}: use one of {', '.join(FORMAT_NAMES)}")
    text = _BY_NAME[fmt].render(model, title)
    assert isinstance(text, str)
    return text


def save(model: Model, path: str | os.PathLike[str], title: str | None = None) -> str:
    """Write the model to ``path`` in the format its suffix names; return the format name.

    A format that takes another model raises ``ValueError`` (``pstats output needs call
    counts``); an unwritable path raises the ``OSError`` the system gives.
    """
    exporter = exporter_for(path)
    if not isinstance(model, exporter.model):
        raise ValueError(f"{exporter.name} output needs {exporter.needs}: {_help()}")
    exporter.save(model, path, title)
    return exporter.name


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to a temporary sibling of ``path`` and rename it into place,
    so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        if isinstance(data, bytes):
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        else:
            # backslashreplace: a stray surrogate in a label must not lose the whole file.
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace", newline="") as out:
                out.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
