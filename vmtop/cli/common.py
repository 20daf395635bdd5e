"""Helpers the commands share: output files (checked before anything runs, written after), the
program a command runs under a recorder (:class:`Outcome`) and printing a report.

The formats themselves are the exporter registry's (:mod:`profilers.writers`): a command asks it
what a path names and whether its report can give the model that format takes.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import profilers
from profilers import writers
from profilers.callgraph import CallGraph
from profilers.stacks import StackModel
from vmtop.cli import target as target_module
from vmtop.cli.errors import CliError

# The frames of these files run the program (Outcome.wrap, target_runner), they are not it.
RUNNER_FILES = (os.path.abspath(__file__), os.path.abspath(target_module.__file__))
_PROFILERS_DIR = os.path.dirname(os.path.abspath(profilers.__file__ or "")) + os.sep


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


# -- the program a command runs ---------------------------------------------------------------------
class Outcome:
    """The exit code of the program a command runs (``vmtop profile``, ``allocations``, ``gc``);
    its errors are printed as Python would print them, and the report is still made."""

    def __init__(self, command: str, what: str = "report") -> None:
        self.command = command
        self.what = what
        self.code = 0

    def wrap(self, runner: Callable[[], object]) -> Callable[[], None]:
        def program() -> None:
            try:
                code = runner()
                self.code = code if isinstance(code, int) else 0
            except KeyboardInterrupt:
                self.code = 130
                print(
                    f"vmtop {self.command}: interrupted; the {self.what} covers what ran",
                    file=sys.stderr,
                )
            except BaseException:
                self.code = 1
                print_program_error()

        return program


def print_program_error() -> None:
    """The exception being handled, with the program's frames only (not the runner's, runpy's
    or the recorder's), as ``python script.py`` would show it."""
    etype, value, tb = sys.exc_info()
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename in RUNNER_FILES or "runpy" in filename or filename.startswith(_PROFILERS_DIR):
            tb = tb.tb_next
            continue
        break
    traceback.print_exception(etype, value, tb)


def print_report(report: Any) -> None:
    """A report on stdout (120 columns when it is not a terminal)."""
    from rich.console import Console

    sys.stdout.flush()
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(report)
