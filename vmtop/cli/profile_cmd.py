"""``vmtop profile [options] script.py [args]`` / ``-m module``: a call profile of a program.

Like ``python -m cProfile`` and ``pyinstrument``: the program runs in this process as
``__main__`` under the profiler; the report is printed to stdout, or written to ``-o FILE`` in
the format its suffix names. ``vmtop profile`` exits with the program's exit code (130 when it
was interrupted with Ctrl-C, which still writes the profile of what ran).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from vmtop.cli import options
from vmtop.cli.common import (
    RUNNER_FILES,
    Outcome,
    check_output,
    output_epilog,
    print_report,
    save_report,
)
from vmtop.cli.errors import CliError
from vmtop.cli.live_jobs import add_live_arguments, check_live_options, run_live
from vmtop.cli.target import add_target_arguments, target_runner

# Frames of these files are the runner, not the program.
HIDE_FILES = (os.path.abspath(__file__), *RUNNER_FILES)

EPILOG = f"""\
{output_epilog(calls=True)}

examples:
  vmtop profile app.py --port 8080          sampled call tree of app.py, printed
  vmtop profile -o app.svg app.py           flamegraph
  vmtop profile --calls --sort acc -m pkg   CNT / ACC / OWN with callers and callees
  vmtop profile --calls -o app.pstats app.py
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "profile",
        help="profile a script or module: sampled call tree, or --calls for CNT/ACC/OWN",
        description="Run script.py (or -m module) as __main__ under a profiler and print the "
        "report, or write it with -o. Arguments after the script go to it. Exits with the "
        "program's exit code.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--calls",
        action="store_true",
        help="count every call with cProfile (CNT, ACC, OWN, callers and callees) "
        "instead of sampling with pyinstrument",
    )
    p.add_argument(
        "-i",
        "--interval",
        type=options.sampling_interval,
        default=0.001,
        metavar="S",
        help="sampling interval in seconds (default 0.001; sampled mode)",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write FILE instead of printing; format from the suffix (see below)",
    )
    p.add_argument(
        "--sort",
        choices=("own", "acc", "cnt"),
        help="--calls report order: own time (default), acc (including callees) or call count",
    )
    p.add_argument(
        "--limit",
        type=options.positive_int,
        metavar="N",
        help="--calls report: show the first N functions (default 20)",
    )
    p.add_argument(
        "--filter",
        metavar="TEXT",
        help="--calls report: only functions whose name, path or module contains TEXT",
    )
    add_live_arguments(p, "profile")
    add_target_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.pid is not None:
        return run_live(args, "profile")
    check_live_options(args)
    _check_options(args)
    check_output(args.output, calls=args.calls)
    name, runner = target_runner(args)
    outcome = Outcome("profile", "profile")
    report = _profile(outcome.wrap(runner), name, args)
    _emit(report, args)
    return outcome.code


# -- checks, all before the program runs ---------------------------------------------------------
def _check_options(args: argparse.Namespace) -> None:
    if args.calls:
        return
    given = [f"--{name}" for name in ("sort", "limit", "filter") if getattr(args, name) is not None]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise CliError(f"{'/'.join(given)} {verb} to the --calls report only: add --calls")


# -- running ---------------------------------------------------------------------------------------
def _profile(program: Callable[[], None], name: str, args: argparse.Namespace) -> Any:
    from profilers.profile import run_profile

    return run_profile(
        program, interval=args.interval, calls=args.calls, hide_files=HIDE_FILES, name=name
    )


def _emit(report: Any, args: argparse.Namespace) -> None:
    view = report
    if args.calls:
        view = report.report(sort=args.sort or "own", limit=args.limit or 20, filter=args.filter)
    if args.output is None:
        print_report(view)
        return
    save_report(report, args.output)
