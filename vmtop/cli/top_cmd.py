"""``vmtop top PID``: etop-like snapshots of a live target, as text or JSON."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from typing import Any

from vmtop.cli import options
from vmtop.cli.errors import CliError
from vmtop.records import SCHEMA_VERSION, SORT_KEYS

# The rest is imported where it is used: the injection starts before the views are imported
# (they load while the first interval runs), and a peek never imports the injector
# (docs/attach.md, "Attach latency").


def register(sub: Any) -> None:
    p = sub.add_parser(
        "top",
        help="print snapshots of a live target (text like top -b, or --json)",
        description="Print etop-like snapshots of the processes (asyncio tasks, threads, "
        "shared queues) of a running Python program that has a vmtop agent.",
    )
    p.add_argument("pid", type=options.pid, help="process id of the target")
    p.add_argument("--once", action="store_true", help="print one snapshot and exit")
    p.add_argument("--count", type=options.positive_int, metavar="N", help="print N snapshots")
    p.add_argument(
        "--interval",
        "-i",
        type=options.interval,
        default=1.0,
        metavar="S",
        help="seconds between snapshots; the first covers one interval (default 1)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help=f"one JSON object per snapshot (schema {SCHEMA_VERSION})",
    )
    p.add_argument("--sort", "-s", choices=SORT_KEYS, default="reductions")
    p.add_argument(
        "-n",
        "--lines",
        type=options.positive_int,
        default=30,
        metavar="LINES",
        help="rows per snapshot (default 30)",
    )
    p.add_argument(
        "--accumulate",
        "-a",
        action="store_true",
        help="totals since attach instead of per-interval deltas",
    )
    p.add_argument(
        "--filter", "-f", default="", metavar="TEXT", help="only rows whose name contains TEXT"
    )
    p.add_argument(
        "--kinds",
        default="task,thread,queue",
        metavar="K,K",
        help="row kinds to show: task,thread,queue (default all)",
    )
    p.add_argument(
        "--group",
        choices=("none", "coro"),
        default="none",
        help="coro: only the coroutine groups (tasks of one coroutine function, finished ones "
        "folded in: a web service's handlers), LINES of them; by default they follow the rows",
    )
    p.add_argument(
        "--subprocesses",
        action="store_true",
        help="the target and all its descendants that have an agent, in one view: a process "
        "table, then every process's rows sorted together, each with its pid",
    )
    p.add_argument(
        "--peek",
        action="store_true",
        help="no agent: thread stacks from py-spy and psutil figures; nothing is loaded",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--inject",
        action="store_const",
        const=True,
        default=None,
        help="load the agent if the target has none (asks on a terminal; see --method)",
    )
    how.add_argument(
        "--no-inject", dest="inject", action="store_const", const=False, help="never load it"
    )
    p.add_argument("--yes", "-y", action="store_true", help="load the agent without asking")
    options.add_inject_method(p)
    p.set_defaults(func=run)


def parse_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in ("task", "thread", "queue")]
    if bad or not kinds:
        raise CliError(f"--kinds takes task, thread and/or queue, not {text!r}")
    return kinds


def run(args: argparse.Namespace) -> int:
    kinds = parse_kinds(args.kinds)
    count = 1 if args.once else args.count
    if args.peek and args.subprocesses:
        raise CliError("--peek shows one process: it cannot be used with --subprocesses")
    if args.group == "coro" and args.subprocesses:
        raise CliError("--group coro shows one process's groups: drop --subprocesses")
    groups = args.lines if args.group == "coro" else min(args.lines, 10)
    client = _connect(args)
    # The first snapshot covers one interval from the hello: the view is imported meanwhile.
    due = time.monotonic() + args.interval
    render = _renderer(args)
    shown = 0
    from vmtop.client import ClientError

    try:
        while count is None or shown < count:
            time.sleep(max(0.0, due - time.monotonic()))
            snap = client.snapshot(
                sort=args.sort,
                limit=args.lines,
                filter=args.filter,
                accumulate=args.accumulate,
                kinds=kinds,
                groups=groups,
            )
            sys.stdout.write(render(snap))
            sys.stdout.flush()
            shown += 1
            due = time.monotonic() + args.interval
    except ClientError as exc:
        raise CliError(str(exc)) from None
    except BrokenPipeError:
        return 0
    finally:
        client.close()
    return 0


def _connect(args: argparse.Namespace) -> Any:
    """The connected source: the agent (injected first when asked), a fleet, or a peek."""
    from vmtop.attach.checks import AttachError
    from vmtop.client import ClientError

    try:
        if args.peek:
            from vmtop.peek import PeekSource

            return PeekSource(args.pid).connect()
        from vmtop.attach import DEFAULT_TIMEOUT, ensure_agent
        from vmtop.cli.consent import terminal_confirm

        ensure_agent(
            args.pid,
            args.inject,
            args.yes,
            DEFAULT_TIMEOUT,
            method=args.method,
            confirm=terminal_confirm(),
        )
        if args.subprocesses:
            from vmtop.fleet.multi import Fleet

            return Fleet(args.pid).connect()
        from vmtop.client import AgentClient

        return AgentClient(args.pid).connect()
    except (ClientError, AttachError) as exc:
        raise CliError(str(exc)) from None


def _renderer(args: argparse.Namespace) -> Callable[[Any], str]:
    """Snapshot -> the text to print: a JSON line, or the table (a blank line before every
    table but the first)."""
    if args.json:
        import json

        return lambda snap: json.dumps(snap.to_dict(), default=str) + "\n"
    from vmtop.views import fleet_text, top_text

    view: Callable[[Any], str] = fleet_text.render if args.subprocesses else top_text.render
    if args.group == "coro":
        view = functools.partial(top_text.render, groups_only=True)
    first = True

    def text(snap: Any) -> str:
        nonlocal first
        out = view(snap) if first else "\n" + view(snap)
        first = False
        return out

    return text
