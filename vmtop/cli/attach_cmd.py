"""``vmtop attach PID``: the live TUI on a running Python process.

Connects to the target's agent (injecting one first when asked and available), or with
``--peek`` reads thread stacks from outside without any agent (read-only, no tasks).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

from vmtop.cli import options
from vmtop.cli.errors import CliError

INJECT_TIMEOUT = 15.0
IMPORT_SWITCH_INTERVAL = 0.0005  # seconds, while Textual imports on a thread (see run)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "attach",
        help="live TUI on a running Python process",
        description="Open the live TUI on a running Python program: its asyncio tasks, "
        "threads and shared queues, with the node header, drill-down and cancel. Press ? "
        "in the TUI for the keys, q to detach.",
    )
    p.add_argument("pid", type=options.pid, help="process id of the target")
    p.add_argument(
        "--interval",
        "-i",
        type=options.interval,
        default=1.0,
        metavar="S",
        help="seconds between refreshes (default 1; + and - change it live)",
    )
    p.add_argument(
        "--peek",
        action="store_true",
        help="read-only: thread stacks sampled from outside (py-spy), no agent, no injection",
    )
    p.add_argument(
        "--subprocesses",
        action="store_true",
        help="the target and its descendants that have an agent, in one view (rows tagged "
        "pid/id; drill-down and cancel go to each row's own process; no profile jobs)",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--inject",
        action="store_true",
        help="if the target has no agent, inject one (asks first)",
    )
    how.add_argument(
        "--yes", "-y", action="store_true", help="inject an agent if needed, without asking"
    )
    how.add_argument(
        "--no-inject", action="store_true", help="never inject: fail when there is no agent"
    )
    options.add_inject_method(p)
    p.set_defaults(func=run)


def _inject_choice(args: argparse.Namespace) -> bool | None:
    if args.inject or args.yes:
        return True
    if args.no_inject:
        return False
    return None  # ask when interactive


def connect(args: argparse.Namespace) -> Any:
    """The source the TUI reads: the agent (loaded first if asked and allowed), or peek."""
    if args.peek and args.subprocesses:
        raise CliError("--peek shows one process: it cannot be used with --subprocesses")
    from vmtop.client import AgentClient, ClientError

    if args.peek:
        from vmtop.peek import PeekSource

        try:
            return PeekSource(args.pid).connect()
        except ClientError as exc:
            raise CliError(str(exc)) from None
    from vmtop.attach import AttachError, ensure_agent
    from vmtop.cli.consent import terminal_confirm

    try:
        ensure_agent(
            args.pid,
            inject=_inject_choice(args),
            yes=args.yes,
            timeout=INJECT_TIMEOUT,
            method=args.method,
            confirm=terminal_confirm(),
        )
    except AttachError as exc:  # no agent and none may or could be loaded: one line
        raise CliError(str(exc)) from None
    try:
        if args.subprocesses:
            from vmtop.fleet.source import FleetSource

            return FleetSource(args.pid).connect()
        return AgentClient(args.pid).connect()
    except ClientError as exc:
        raise CliError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    terminal = sys.stdin.isatty() and sys.stdout.isatty()
    with _tui_imported_meanwhile(terminal):
        source = connect(args)
    if not terminal:
        source.close()
        raise CliError(
            "the TUI needs a terminal; for text or JSON use 'vmtop top PID' (--once, --json)"
        )
    from vmtop.client import ClientError
    from vmtop.tui import run_tui

    try:
        return run_tui(args.pid, interval=args.interval, source=source)
    except ClientError as exc:
        raise CliError(str(exc)) from None


@contextlib.contextmanager
def _tui_imported_meanwhile(terminal: bool) -> Iterator[None]:
    """On a terminal, import the TUI on a thread while the body finds or injects the agent.

    Textual takes ~0.13 s to import and an injection ~0.1 s, during which this thread mostly
    waits for the target. The modules both sides use (client, records, attach) are imported
    first, here, so the two threads never import the same module at once; a shorter switch
    interval meanwhile lets this thread have the GIL back within 0.5 ms when the injector or
    the agent answers. An import error is raised again by ``run``'s own import.
    """
    if not terminal:
        yield
        return
    import vmtop.attach  # noqa: F401
    import vmtop.client  # noqa: F401

    def load() -> None:
        with contextlib.suppress(BaseException):
            import vmtop.tui.app  # noqa: F401

    previous = sys.getswitchinterval()
    sys.setswitchinterval(IMPORT_SWITCH_INTERVAL)
    thread = threading.Thread(target=load, name="vmtop-import-tui", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()
        sys.setswitchinterval(previous)
