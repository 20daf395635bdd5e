"""How vmtop writes numbers and paths for people: one home for every report, view and widget.

Every value says its unit; a value that cannot be measured is "–" (:data:`DASH`), never 0.
Two styles of duration: :func:`format_seconds` in reports (``12.30 ms``, with a space and
fixed decimals, so columns line up) and :func:`seconds` in narrow table cells (``12.3ms``,
``3m05s``). Paths are shortened the same way everywhere (:func:`short_path`).
"""

from __future__ import annotations

import functools
import os
import sysconfig
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from profilers.stacks import Frame

DASH = "–"


# -- durations -------------------------------------------------------------------------------------
def format_seconds(value: float | None) -> str:
    """A duration in a report: ``12.3 µs``, ``4.56 ms``, ``1.234 s``; "–" when not measured."""
    if value is None:
        return DASH
    if value < 1e-3:
        return f"{value * 1e6:.1f} µs"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.3f} s"


def seconds(value: float | None) -> str:
    """A duration in a table cell: 850µs, 12.3ms, 1.25s, 3m05s, 2h05m."""
    if value is None:
        return DASH
    if value < 0.001:
        return f"{value * 1e6:.0f}µs"
    if value < 1:
        return f"{value * 1000:.1f}ms"
    if value < 100:
        return f"{value:.2f}s"
    m, s = divmod(int(value), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def uptime(value: float) -> str:
    """``1d 2:03:04`` or ``2:03:04``."""
    value = int(value)
    d, rest = divmod(value, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{d}d " if d else "") + f"{h}:{m:02d}:{s:02d}"


# -- sizes and counts ------------------------------------------------------------------------------
def format_bytes(value: float | None, sign: bool = False) -> str:
    """``512 B``, ``1.5 KiB``, ``10.0 MiB`` (``+``/``-`` in front with ``sign``); "–" for None."""
    if value is None:
        return DASH
    prefix = (
        ("+" if value > 0 else "-" if value < 0 else "") if sign else ("-" if value < 0 else "")
    )
    size = abs(float(value))
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            if unit == "B":
                return f"{prefix}{size:.0f} B"
            return f"{prefix}{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def count(value: float | None) -> str:
    """A count in a table cell: 12345, 123k, 12M."""
    if value is None:
        return DASH
    value = int(value)
    if abs(value) < 100_000:
        return str(value)
    if abs(value) < 100_000_000:
        return f"{value / 1000:.0f}k"
    return f"{value / 1_000_000:.0f}M"


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}%"


# -- text and paths --------------------------------------------------------------------------------
def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


_STDLIB = sysconfig.get_paths()["stdlib"] + os.sep


def short_path(file: str) -> str:
    """A path as a user reads it: relative to the working directory, site-packages or stdlib
    (``<frozen ...>``, ``<string>`` and relative paths as they are)."""
    if not file.startswith(os.sep):
        return file
    return _short_path(file, os.getcwd() + os.sep)


@functools.lru_cache(maxsize=4096)
def _short_path(file: str, cwd: str) -> str:
    if file.startswith(cwd):
        return file[len(cwd) :]
    for marker in ("site-packages" + os.sep, "dist-packages" + os.sep):
        at = file.rfind(marker)
        if at >= 0:
            return file[at + len(marker) :]
    if file.startswith(_STDLIB):
        return file[len(_STDLIB) :]
    return file


def short_location(frame: Frame) -> str:
    """``file:line`` with the file shortened by :func:`short_path` ("" for a builtin)."""
    if not frame.file:
        return ""
    path = short_path(frame.file)
    return f"{path}:{frame.line}" if frame.line else path
