"""Run a user's script or module as ``__main__`` (what ``vmtop profile/run`` wrap)."""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from collections.abc import Callable

from vmtop.cli.errors import CliError


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """``script.py [args...]`` or ``-m module [args...]``, like ``python`` itself."""
    parser.add_argument(
        "-m", dest="module", metavar="MODULE", help="run a library module as a script"
    )
    parser.add_argument("target_args", nargs=argparse.REMAINDER, metavar="script.py [args]")


def target_runner(args: argparse.Namespace) -> tuple[str, Callable[[], object]]:
    """Validate the target and return ``(display name, callable that runs it)``.

    The callable sets ``sys.argv`` and ``sys.path[0]`` as ``python script.py`` would, and turns
    the program's ``SystemExit`` into a return value so the caller can still write its report.
    """
    rest = list(args.target_args)
    if rest and rest[0] == "--":
        rest = rest[1:]
    if args.module:
        module = args.module
        argv = [module, *rest]
        if not module_exists(module):
            raise CliError(f"no module named {module}")

        def run_module() -> object:
            sys.argv = argv
            sys.path.insert(0, os.getcwd())
            return _exit_code(lambda: runpy.run_module(module, run_name="__main__", alter_sys=True))

        return module, run_module
    if not rest:
        raise CliError("no script given: pass script.py [args] or -m module [args]")
    script = rest[0]
    if not os.path.isfile(script):
        raise CliError(f"no such script: {script}")
    path = os.path.abspath(script)

    def run_script() -> object:
        sys.argv = rest
        sys.path.insert(0, os.path.dirname(path))
        return _exit_code(lambda: runpy.run_path(path, run_name="__main__"))

    return script, run_script


def module_exists(module: str) -> bool:
    """Whether ``python -m module`` would find it (the current directory first, as python)."""
    import importlib.util

    sys.path.insert(0, os.getcwd())
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
    finally:
        sys.path.pop(0)


def _exit_code(fn: Callable[[], object]) -> int:
    try:
        fn()
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    return 0
