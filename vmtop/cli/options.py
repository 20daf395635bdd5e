"""Argument types shared by sub-commands: they reject bad values with one clear line."""

from __future__ import annotations

import argparse
from typing import Any

INJECT_METHODS = ("auto", "ptrace", "gdb", "lldb")  # vmtop.attach.methods.CHOICES


def pid(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"pid must be a number, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"pid must be positive, not {value}")
    return value


def interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"interval must be a number of seconds, not {text!r}"
        ) from None
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"interval must be between 0.05 and 3600 s, not {value}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {value}")
    return value


def add_inject_method(parser: Any) -> None:
    """``--method``: how an agent is injected when the target has none (docs/attach.md)."""
    parser.add_argument(
        "--method",
        choices=INJECT_METHODS,
        default="auto",
        help="how to inject the agent: vmtop's ptrace injector, gdb or lldb "
        "(default auto: ptrace, then gdb, then lldb; Python 3.14+: sys.remote_exec)",
    )
