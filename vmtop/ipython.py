"""IPython / Jupyter magics: ``%vmtop statement`` and ``%%vmtop`` over a cell.

Load with ``%load_ext vmtop.ipython``, then::

    %vmtop fib(25)                      # sampled call tree of one statement
    %vmtop --calls --sort acc fib(20)   # CNT / ACC / OWN with callers and callees
    %%vmtop -o cell.svg                 # the whole cell, written as a flamegraph
    ...

Options (before the code): ``--calls``, ``-i S``/``--interval S``, ``-o FILE``, ``--sort
own|acc|cnt``, ``--limit N``, ``--filter TEXT``. The magic returns the report, so the notebook
shows it and ``p = %vmtop ...`` keeps it. The code runs in the notebook's namespace;
``report.return_value`` is the value of a single expression. Top-level ``await`` is not supported.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from profilers.calls_report import CallsProfile
from profilers.profile import run_profile

_FLAGS = {"--calls"}
_VALUED = {"-i": "interval", "--interval": "interval", "-o": "output", "--sort": "sort"}
_VALUED |= {"--limit": "limit", "--filter": "filter"}
_HIDE = (os.path.abspath(__file__),)


class MagicUsageError(ValueError):
    """Bad ``%vmtop`` options: shown as one line."""


def parse_options(line: str) -> tuple[dict[str, Any], str]:
    """Split ``[options] code`` into the options and the code (options come first)."""
    opts: dict[str, Any] = {"calls": False, "interval": 0.001, "output": None}
    opts |= {"sort": "own", "limit": 20, "filter": None}
    rest = line.lstrip()
    while rest.startswith("-"):
        token, _, after = rest.partition(" ")
        name, eq, inline = token.partition("=")
        if name in _FLAGS and not eq:
            opts["calls"] = True
            rest = after.lstrip()
            continue
        if name not in _VALUED:
            raise MagicUsageError(f"%vmtop: unknown option {name} (see %vmtop?)")
        if eq:
            value = inline
        else:
            value, _, after = after.lstrip().partition(" ")
            if not value:
                raise MagicUsageError(f"%vmtop: {name} needs a value")
        opts[_VALUED[name]] = value
        rest = after.lstrip()
    try:
        opts["interval"] = float(opts["interval"])
        opts["limit"] = int(opts["limit"])
    except ValueError:
        raise MagicUsageError("%vmtop: --interval takes seconds, --limit a whole number") from None
    if opts["sort"] not in ("own", "acc", "cnt"):
        raise MagicUsageError("%vmtop: --sort takes own, acc or cnt")
    return opts, rest


def vmtop_magic(line: str, cell: str | None = None) -> Any:
    """Profile a statement (``%vmtop``) or a cell (``%%vmtop``); returns the report."""
    from IPython import get_ipython

    try:
        opts, code = parse_options(line)
    except MagicUsageError as exc:
        print(exc, file=sys.stderr)
        return None
    source = cell if cell is not None else code
    if not source.strip():
        print("%vmtop: nothing to profile: %vmtop [options] statement", file=sys.stderr)
        return None
    shell = get_ipython()
    namespace = shell.user_ns if shell is not None else {}
    try:
        compiled = compile(source, "<vmtop>", "eval")
        is_expression = True
    except SyntaxError:
        compiled = compile(source, "<vmtop>", "exec")
        is_expression = False

    def run() -> Any:
        if is_expression:
            return eval(compiled, namespace)
        exec(compiled, namespace)
        return None

    report = run_profile(
        run,
        interval=opts["interval"],
        calls=opts["calls"],
        hide_files=_HIDE,
        name="%%vmtop cell" if cell is not None else source.strip(),
    )
    if opts["output"]:
        written = report.save(opts["output"])
        print(f"wrote {opts['output']} ({written})", file=sys.stderr)
    if isinstance(report, CallsProfile):
        return report.report(sort=opts["sort"], limit=opts["limit"], filter=opts["filter"])
    return report


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magic_function(vmtop_magic, magic_kind="line_cell", magic_name="vmtop")


def unload_ipython_extension(ipython: Any) -> None:  # pragma: no cover - nothing to undo
    pass
