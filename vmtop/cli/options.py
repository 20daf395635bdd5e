"""Argument types shared by sub-commands: they reject bad values with one clear line."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from profilers.alloc_limits import MAX_NFRAME

INJECT_METHODS = ("auto", "ptrace", "gdb", "lldb")  # vmtop.attach.methods.CHOICES


def pid(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"pid must be a number, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"pid must be positive, not {value}")
    return value


def seconds(
    what: str, low: float, high: float, *, low_allowed: bool = False
) -> Callable[[str], float]:
    """An argument type: a number of seconds above ``low`` (or from it, ``low_allowed``) and up
    to ``high``; ``what`` names it in the one-line error."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} must be a number of seconds, not {text!r}"
            ) from None
        above = value >= low if low_allowed else value > low
        if not (above and value <= high):
            raise argparse.ArgumentTypeError(
                f"{what} must be between {low:g} and {high:g} s, not {value:g}"
            )
        return value

    parse.__name__ = what  # argparse names the type in some errors
    return parse


#: Refresh interval of the live views (top, attach, demo).
interval = seconds("interval", 0.05, 3600, low_allowed=True)
#: How long a live job measures (``--pid PID -d S``).
MAX_JOB_SECONDS = 3600.0
job_duration = seconds("duration", 0, MAX_JOB_SECONDS)
#: The sampling interval of ``vmtop profile`` (pyinstrument).
sampling_interval = seconds("interval", 0, 10)
#: How long ``vmtop record`` samples (py-spy): up to a week.
record_duration = seconds("duration", 0, 7 * 24 * 3600)


def depth(text: str) -> int:
    """Frames per tracemalloc traceback: tracemalloc's own limit (profilers/alloc_limits.py)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"depth must be a whole number, not {text!r}") from None
    if not 1 <= value <= MAX_NFRAME:
        raise argparse.ArgumentTypeError(f"depth must be between 1 and {MAX_NFRAME}, not {value}")
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
