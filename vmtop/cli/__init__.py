"""The ``vmtop`` command: one module per sub-command, each with ``register`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from vmtop.cli.errors import CliError

# Sub-command modules, in the order ``vmtop --help`` lists them.
COMMANDS: list[str] = [
    "run",
    "top",
    "ps",
    "attach",
    "demo",
    "profile",
    "record",
    "allocations",
    "gc",
    "exporter",
]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser(only: str | None = None) -> Parser:
    """The whole parser, or with ``only`` (a name in :data:`COMMANDS`) one with that single
    sub-command: ``vmtop top PID`` then imports ``top_cmd`` alone, not every command's module
    (about 40 ms of a start-up that an attach's latency includes)."""
    from vmtop._version import __version__

    parser = Parser(
        prog="vmtop",
        description="Live monitor and profiler for Python asyncio, thread and actor programs.",
    )
    parser.add_argument("--version", action="version", version=f"vmtop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS if only is None else [only]:
        module = importlib.import_module(f"vmtop.cli.{name}_cmd")
        module.register(sub)
    return parser


def split_target_argv(
    parser: argparse.ArgumentParser, argv: list[str]
) -> tuple[list[str], list[str]]:
    """Split ``[vmtop options] script.py|-m module [program args]`` after the target.

    Everything after the script (or ``-m module``) belongs to the program, even when it looks
    like an option (``vmtop run -m pip --version``), exactly as with ``python``.
    """
    actions = parser._option_string_actions
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            return argv[: i + 1], argv[i + 1 :]
        if tok == "-m":
            return argv[: i + 2], argv[i + 2 :]
        if tok.startswith("-") and tok != "-":
            action = actions.get(tok.split("=", 1)[0])
            takes_value = action is not None and action.nargs != 0 and "=" not in tok
            i += 2 if takes_value else 1
            continue
        return argv[: i + 1], argv[i + 1 :]
    return argv, []


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    tail: list[str] = []
    sub = _subparsers(parser)
    if argv and argv[0] in sub:
        cmd_parser = sub[argv[0]]
        if any(a.dest == "target_args" for a in cmd_parser._actions):
            head, tail = split_target_argv(cmd_parser, argv[1:])
            argv = [argv[0], *head]
    args = parser.parse_args(argv)
    if tail:
        args.target_args = [*getattr(args, "target_args", []), *tail]
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"vmtop {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"vmtop {args.command}: interrupted", file=sys.stderr)
        return 130


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}
