"""``vmtop run script.py [args]`` / ``vmtop run -m module``: the program, with the agent.

The program runs in this very process (argv, stdin, signals and the exit code are its own);
the agent's listener thread starts first and costs nothing until a client attaches. Every
Python process the program starts gets an agent of its own (``vmtop/agent/children.py``).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Any

from vmtop.cli.target import add_target_arguments, target_runner


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a Python program with the vmtop agent loaded",
        description="Run script.py (or -m module) with the vmtop agent, so that "
        "'vmtop attach/top PID' can watch it. Arguments after the script go to it.",
    )
    add_target_arguments(p)
    p.add_argument(
        "--quiet", "-q", action="store_true", help="do not print the agent's socket path"
    )
    p.add_argument(
        "--no-subprocesses",
        dest="subprocesses",
        action="store_false",
        help="no agents in the Python processes the program starts (forks, multiprocessing "
        "workers, subprocesses): by default each gets its own",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    import vmtop.agent

    name, runner = target_runner(args)
    if args.subprocesses:
        from vmtop.agent import children

        children.enable()
    path = vmtop.agent.start()
    if path is not None and not args.quiet:
        print(f"vmtop: agent listening for pid {os.getpid()} on {path}", file=sys.stderr)
    try:
        code = runner()
    except KeyboardInterrupt:
        raise
    except BaseException:
        # Report the program's own error as Python would, without vmtop's frames on top.
        etype, value, tb = sys.exc_info()
        while tb is not None and _is_ours(tb.tb_frame.f_code.co_filename):
            tb = tb.tb_next
        traceback.print_exception(etype, value, tb)
        return 1
    finally:
        vmtop.agent.stop()
    return int(code) if isinstance(code, int) else 0


def _is_ours(filename: str) -> bool:
    return filename.endswith("runpy.py") or "/vmtop/cli/" in filename
