"""Flamegraph writers: one :class:`~profilers.stacks.StackModel` in, one file format out.

The output format comes from the file name, like ``p.save("out.svg")``::

    fmt = format_for("out.speedscope.json")   # "speedscope"
    text = render(model, fmt, title="my run")
    save(model, "out.svg")                     # -> "svg"

Each writer is a module with ``render(model, title) -> str``; adding a format never touches a
recorder. Formats owned by other reports (``.pstats``, ``.callgrind``) are handled there.
"""

from __future__ import annotations

import os
from pathlib import Path

from profilers.stacks import StackModel

#: File suffix -> what the file is. Longest suffixes are matched first.
FORMATS: dict[str, str] = {
    ".svg": "interactive SVG flamegraph (zoom, search, tooltips); open in a browser",
    ".speedscope.json": "speedscope JSON; open at https://www.speedscope.app or `speedscope FILE`",
    ".json": "speedscope JSON (same as .speedscope.json)",
    ".folded": "folded stacks 'a;b;c 42', one stack a line (flamegraph.pl, inferno, speedscope)",
    ".collapsed": "folded stacks (same as .folded)",
    ".html": "HTML page: the SVG flamegraph plus a sortable table of the top functions",
}

_FORMAT_OF_SUFFIX = {
    ".svg": "svg",
    ".speedscope.json": "speedscope",
    ".json": "speedscope",
    ".folded": "folded",
    ".collapsed": "folded",
    ".html": "html",
}

#: Format names accepted by :func:`render`.
FORMAT_NAMES = ("svg", "speedscope", "folded", "html")

_HELP = "use .svg, .speedscope.json, .folded or .html"


def format_for(path: str | os.PathLike[str]) -> str:
    """The format name (``svg``, ``speedscope``, ``folded``, ``html``) for an output path.

    Unknown suffixes raise ``ValueError`` with a one-line message fit for a CLI.
    """
    name = Path(path).name.lower()
    for suffix in sorted(_FORMAT_OF_SUFFIX, key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return _FORMAT_OF_SUFFIX[suffix]
    suffix = Path(name).suffix
    if not suffix:
        raise ValueError(f"no output format suffix in '{Path(path).name}': {_HELP}")
    raise ValueError(f"unknown output format '{suffix}': {_HELP}")


def render(model: StackModel, fmt: str, title: str | None = None) -> str:
    """The model as text in format ``fmt`` (a name from :data:`FORMAT_NAMES`)."""
    if fmt == "svg":
        from profilers.writers import svg

        return svg.render(model, title)
    if fmt == "speedscope":
        from profilers.writers import speedscope

        return speedscope.render(model, title)
    if fmt == "folded":
        from profilers.writers import folded

        return folded.render(model)
    if fmt == "html":
        from profilers.writers import html

        return html.render(model, title)
    raise ValueError(f"unknown flamegraph format {fmt!r}: use one of {', '.join(FORMAT_NAMES)}")


def save(model: StackModel, path: str | os.PathLike[str], title: str | None = None) -> str:
    """Write the model to ``path`` in the format its suffix names; return the format name.

    The text goes to a temporary file beside ``path`` that is then renamed over it, so a reader
    never sees half a file. An unwritable path raises the ``OSError`` the system gives.
    """
    fmt = format_for(path)
    write_text_atomic(Path(path), render(model, fmt, title))
    return fmt


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to a temporary sibling of ``path`` and rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        # backslashreplace: a stray surrogate in a label must not lose the whole file.
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace", newline="") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
