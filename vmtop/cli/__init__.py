"""The ``vmtop`` command: one module per sub-command, each with ``register`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from vmtop.cli.errors import CliError

# Sub-command modules, in the order ``vmtop --help`` lists them.
COMMANDS: list[str] = ["run", "top", "ps", "profile"]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> Parser:
    from vmtop import __version__

    parser = Parser(
        prog="vmtop",
        description="Live monitor and profiler for Python asyncio, thread and actor programs.",
    )
    parser.add_argument("--version", action="version", version=f"vmtop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"vmtop.cli.{name}_cmd")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
