"""``vmtop gc script.py [args]`` / ``-m module``: garbage-collector pressure of a program.

The program runs in this process as ``__main__`` with a ``gc.callbacks`` watcher on (<1 %
overhead, see docs/benchmarks.md); when it ends, collections, collected objects and pauses per
generation, the share of wall time spent in collections and any finding are printed to stdout.
Exits with the program's exit code (130 after Ctrl-C, which still reports).
"""

from __future__ import annotations

import argparse
from typing import Any

from vmtop.cli.common import Outcome, print_report
from vmtop.cli.live_jobs import add_live_arguments, check_live_options, run_live
from vmtop.cli.target import add_target_arguments, target_runner

EPILOG = """\
examples:
  vmtop gc app.py --port 8080      collections, pauses (p50/p99/max) and share of wall time
  vmtop gc --json -m pkg           the same as JSON
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "gc",
        help="run a script or module and report garbage-collector pressure",
        description="Run script.py (or -m module) as __main__ and print the collections, "
        "collected objects and pause times per generation, and the share of wall time spent "
        "in collections. Arguments after the script go to it. Exits with the program's exit "
        "code.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_live_arguments(p, "gc")
    add_target_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.pid is not None:
        return run_live(args, "gc")
    check_live_options(args)
    name, runner = target_runner(args)
    outcome = Outcome("gc")
    from profilers.gcwatch import run_gc_pressure

    report = run_gc_pressure(outcome.wrap(runner), name=name)
    if args.json:
        print(report.to_json())
    else:
        print_report(report)
    return outcome.code
