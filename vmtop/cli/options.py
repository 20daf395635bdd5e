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


def number(
    what: str,
    low: float,
    high: float,
    unit: str = "",
    *,
    noun: str = "a number",
    low_allowed: bool = False,
    integer: bool = False,
) -> Callable[[str], Any]:
    """An argument type: a number above ``low`` (or from it, ``low_allowed``) up to ``high``,
    a whole one with ``integer``. ``what`` names it in the one-line error, ``noun`` says what
    was expected ("a number of seconds"), ``unit`` follows the bounds ("s", "samples/s")."""
    convert = int if integer else float
    unit = f" {unit}" if unit else ""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be {noun}, not {text!r}") from None
        above = value >= low if low_allowed else value > low
        if not (above and value <= high):
            raise argparse.ArgumentTypeError(
                f"{what} must be between {_plain(low)} and {_plain(high)}{unit}, "
                f"not {_plain(value)}"
            )
        return value

    parse.__name__ = what  # argparse names the type in some errors
    return parse


def seconds(
    what: str, low: float, high: float, *, low_allowed: bool = False
) -> Callable[[str], float]:
    """A number of seconds (see :func:`number`)."""
    return number(what, low, high, "s", noun="a number of seconds", low_allowed=low_allowed)


def _plain(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


#: Refresh interval of the live views (top, attach, demo).
interval = seconds("interval", 0.05, 3600, low_allowed=True)
#: How long a live job measures (``--pid PID -d S``).
MAX_JOB_SECONDS = 3600.0
job_duration = seconds("duration", 0, MAX_JOB_SECONDS)
#: The sampling interval of ``vmtop profile`` (pyinstrument).
sampling_interval = seconds("interval", 0, 10)
#: How long ``vmtop record`` samples (py-spy): up to a week.
record_duration = seconds("duration", 0, 7 * 24 * 3600)
#: Samples per second of a live sampled profile (the agent's sampler thread).
job_rate = number("rate", 0, 1000, "samples/s", noun="samples per second")
#: Samples per second of ``vmtop record`` (py-spy takes whole numbers).
record_rate = number(
    "rate", 0, 10_000, "samples/s", noun="a whole number of samples per second", integer=True
)
#: Frames per tracemalloc traceback: tracemalloc's own limit (profilers/alloc_limits.py).
depth = number("depth", 1, MAX_NFRAME, noun="a whole number", low_allowed=True, integer=True)
#: Idle actors of the demo.
idle_actors = number(
    "idle", 0, 1_000_000, "actors", noun="a whole number", low_allowed=True, integer=True
)


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
