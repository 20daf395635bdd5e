"""Helpers every command shares: output files (checked before anything runs, written after).

The formats themselves are the exporter registry's (:mod:`profilers.writers`): a command asks it
what a path names and whether its report can give the model that format takes.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from profilers import writers
from profilers.callgraph import CallGraph
from profilers.stacks import StackModel
from vmtop.cli.errors import CliError


def output_epilog(calls: bool = False) -> str:
    """The ``output formats (-o)`` lines of a command's --help."""
    text = f"output formats (-o): {writers.help_list(StackModel)}"
    if calls:
        text += f",\n  and with --calls also {writers.help_list(CallGraph)}"
    return text


def check_output(path: str | None, calls: bool | None = None) -> writers.Exporter | None:
    """The exporter of ``-o path`` (None: no file), or a CliError, before anything runs.

    ``calls`` says whether the command's report has call counts (pstats, callgrind): True (it
    does), False (it would with ``--calls``) or None (the command has no calls mode).
    """
    if path is None:
        return None
    try:
        exporter = writers.exporter_for(path)
    except ValueError as exc:
        hint = f" (or {', '.join(writers.suffix_list(CallGraph))} with --calls)"
        raise CliError(f"{exc}{hint if calls is not None else ''}") from None
    if exporter.model is CallGraph and not calls:
        if calls is None:
            raise CliError(
                f"{exporter.name} output needs call counts (vmtop profile --calls): "
                f"use {', '.join(writers.suffix_list(StackModel))}"
            )
        raise CliError(
            f"{exporter.name} output needs call counts: add --calls (or write .svg, .folded, ...)"
        )
    check_writable(path)
    return exporter


def check_writable(path: str) -> None:
    """CliError unless a file can be written at ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CliError(f"cannot write {path}: it is a directory")
    if not os.path.isdir(directory):
        raise CliError(f"cannot write {path}: no directory {directory}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CliError(f"cannot write {path}: directory {directory} is not writable")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise CliError(f"cannot write {path}: the file is not writable")


def save_report(report: Any, path: str) -> writers.Exporter:
    """``report.save(path)``, its errors as one line, and ``wrote PATH (format, size)``."""
    try:
        exporter = writers.exporter_named(report.save(path))
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if exporter.model is CallGraph:
        size = f"{len(report.functions):,} functions"
    else:
        size = f"{len(report.stacks):,} stacks"
    print(f"wrote {path} ({exporter.name}, {size})", file=sys.stderr)
    return exporter
