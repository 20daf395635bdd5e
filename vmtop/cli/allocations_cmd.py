"""``vmtop allocations [options] script.py [args]`` / ``-m module``: where memory went.

The program runs in this process as ``__main__`` under ``tracemalloc``; when it ends, the top
allocation sites (memory still allocated at the end), the peak and the net retained memory are
printed to stdout, and ``-o FILE`` also writes the allocation flamegraph (format from the
suffix). Exits with the program's exit code (130 after Ctrl-C, which still reports). Every
option and the target are checked before the program runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from profilers.alloc_limits import DEFAULT_NFRAME
from vmtop.cli import options
from vmtop.cli.common import Outcome, check_output, output_epilog, print_report, save_report
from vmtop.cli.live_jobs import add_live_arguments, check_live_options, run_live
from vmtop.cli.target import add_target_arguments, target_runner

EPILOG = f"""\
{output_epilog()}

examples:
  vmtop allocations app.py --port 8080           top 15 lines by bytes still allocated at exit
  vmtop allocations --group function -m pkg      per function
  vmtop allocations --by count --limit 30 app.py most live blocks
  vmtop allocations -o alloc.svg app.py          also write the allocation flamegraph
  vmtop allocations --depth 1 app.py             cheapest tracing (1 frame per allocation)

cost: tracemalloc slows allocation-heavy code several times (more with a deeper --depth).
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "allocations",
        help="run a script or module under tracemalloc: top allocation sites, peak, net",
        description="Run script.py (or -m module) as __main__ with tracemalloc on and print "
        "where the memory still allocated at the end was allocated, with the peak and the net "
        "retained memory. Arguments after the script go to it. Exits with the program's exit "
        "code.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--depth",
        type=options.depth,
        default=DEFAULT_NFRAME,
        metavar="N",
        help=f"frames kept per allocation (tracemalloc nframe; default {DEFAULT_NFRAME})",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="also write the allocation flamegraph to FILE; format from the suffix (see below)",
    )
    p.add_argument(
        "--by",
        choices=("bytes", "count"),
        default="bytes",
        help="order sites by bytes (default) or by live blocks",
    )
    p.add_argument(
        "--group",
        choices=("line", "function", "file"),
        default="line",
        help="one row per line (default), function or file",
    )
    p.add_argument(
        "--limit",
        type=options.positive_int,
        default=15,
        metavar="N",
        help="rows to show (default 15)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_live_arguments(p, "allocations")
    add_target_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.pid is not None:
        return run_live(args, "allocations")
    check_live_options(args)
    check_output(args.output)
    name, runner = target_runner(args)
    outcome = Outcome("allocations")
    # runpy imports pkgutil on first use: import it now, or its code would count as the program's.
    import pkgutil  # noqa: F401

    from profilers.allocations import run_allocations

    report = run_allocations(outcome.wrap(runner), nframe=args.depth, name=name)
    view = report.view(by=args.by, group=args.group, limit=args.limit)
    if args.json:
        print(view.to_json())
    else:
        print_report(view)
    if args.output is not None:
        save_report(report, args.output)
    return outcome.code
