"""``--pid PID -d SECONDS``: the profile / allocations / gc commands against a live target.

Each command calls :func:`add_live_arguments` when it builds its parser and, when ``args.pid``
is set, :func:`run_live` instead of running a program. The target's agent measures for the
duration (a progress bar on a terminal; Ctrl-C ends the job early and the report is still
made) and the report is printed, or written with ``-o`` in the format its suffix names::

    vmtop profile --pid 1234 -d 10 --by-task -o live.svg
    vmtop profile --pid 1234 -d 5 --calls --sort acc
    vmtop allocations --pid 1234 -d 30 --depth 16 --growth
    vmtop gc --pid 1234 -d 60
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from vmtop.cli import options
from vmtop.cli.common import check_output, print_report, save_report
from vmtop.cli.errors import CliError

LIVE_KINDS = ("profile", "allocations", "gc")
DEFAULT_DURATION = 10.0


def add_live_arguments(parser: argparse.ArgumentParser, kind: str = "profile") -> None:
    """Add ``--pid`` and ``-d`` (and the options of ``kind``'s live job) to ``parser``."""
    if kind not in LIVE_KINDS:
        raise ValueError(f"kind must be one of {LIVE_KINDS}")
    group = parser.add_argument_group(
        "live target (through its vmtop agent: 'vmtop run', or vmtop.agent.start() in it)"
    )
    group.add_argument(
        "--pid",
        type=options.pid,
        metavar="PID",
        help="measure the running process PID instead of running a program",
    )
    group.add_argument(
        "-d",
        "--duration",
        type=options.job_duration,
        metavar="SECONDS",
        help=f"with --pid: how long to measure (default {DEFAULT_DURATION:g}; Ctrl-C ends early)",
    )
    if kind == "profile":
        group.add_argument(
            "--rate",
            type=options.job_rate,
            metavar="HZ",
            help="with --pid: samples per second (default 100; the report says what was achieved)",
        )
        which = group.add_mutually_exclusive_group()
        which.add_argument(
            "--task", metavar="NAME", help="with --pid: only samples taken while task NAME ran"
        )
        which.add_argument("--thread", metavar="NAME", help="with --pid: only thread NAME")
        group.add_argument(
            "--by-task",
            action="store_true",
            help="with --pid: task names as the root frames (one tower per task name)",
        )
        group.add_argument(
            "--idle",
            action="store_true",
            help="with --pid: keep samples of idle threads (wall-clock view; default: running "
            "threads only, like py-spy)",
        )
    elif kind == "allocations":
        if not _has_option(parser, "--depth"):
            group.add_argument(
                "--depth",
                type=options.depth,
                metavar="N",
                help="with --pid: frames kept per allocation (default 25; deeper costs more)",
            )
        group.add_argument(
            "--growth",
            action="store_true",
            help="with --pid: also snapshot at the start and report what grew",
        )


def _has_option(parser: argparse.ArgumentParser, flag: str) -> bool:
    return any(flag in action.option_strings for action in parser._actions)


LIVE_ONLY = {
    "duration": "-d",
    "rate": "--rate",
    "task": "--task",
    "thread": "--thread",
    "by_task": "--by-task",
    "idle": "--idle",
    "growth": "--growth",
}


def check_live_options(args: argparse.Namespace) -> None:
    """Without ``--pid``, the live-only options are an error (one clear line)."""
    if getattr(args, "pid", None) is not None:
        return
    given = [flag for name, flag in LIVE_ONLY.items() if getattr(args, name, None)]
    if given:
        verb = "needs" if len(given) == 1 else "need"
        raise CliError(f"{'/'.join(given)} {verb} --pid PID (a live target)")


def run_live(args: argparse.Namespace, kind: str) -> int:
    """Run ``kind``'s job in ``args.pid`` and print or write the report; returns the exit code."""
    if kind not in LIVE_KINDS:
        raise ValueError(f"kind must be one of {LIVE_KINDS}")
    if getattr(args, "target_args", None) or getattr(args, "module", None):
        raise CliError("--pid measures a running process: leave out the script / -m module")
    seconds = args.duration if args.duration is not None else DEFAULT_DURATION
    output = getattr(args, "output", None)
    calls = kind == "profile" and bool(getattr(args, "calls", False))
    if kind == "profile":
        _check_profile_options(args, calls)
    check_output(output, calls=calls if kind == "profile" else None)

    from vmtop.client import AgentClient, ClientError
    from vmtop.jobs_client import JobError

    try:
        with AgentClient(args.pid, timeout=10.0) as client, _progress(kind, calls, args.pid) as bar:
            report = _measure(client, kind, calls, seconds, args, bar)
    except (ClientError, JobError, ValueError) as exc:
        raise CliError(str(exc)) from None
    _emit(report, args, kind, calls, output)
    return 0


def _check_profile_options(args: argparse.Namespace, calls: bool) -> None:
    if calls:
        bad = [
            flag
            for name, flag in (
                ("task", "--task"),
                ("by_task", "--by-task"),
                ("rate", "--rate"),
                ("idle", "--idle"),
            )
            if getattr(args, name, None)
        ]
        if bad:
            raise CliError(
                f"{'/'.join(bad)} apply to sampled profiles: cProfile (--calls) cannot tell "
                "tasks apart and does not sample"
            )
        return
    given = [f"--{n}" for n in ("sort", "limit", "filter") if getattr(args, n, None) is not None]
    if given:
        raise CliError(f"{'/'.join(given)} apply to the --calls report only: add --calls")


def _measure(
    client: Any,
    kind: str,
    calls: bool,
    seconds: float,
    args: argparse.Namespace,
    bar: Callable[[dict[str, Any]], None],
) -> Any:
    from vmtop import jobs_client

    if kind == "profile" and calls:
        return jobs_client.calls(client, seconds, thread=args.thread, progress=bar)
    if kind == "profile":
        return jobs_client.profile(
            client,
            seconds,
            rate=args.rate or 100.0,
            task=args.task,
            thread=args.thread,
            by_task=args.by_task,
            idle=args.idle,
            progress=bar,
        )
    if kind == "allocations":
        return jobs_client.allocations(
            client, seconds, depth=_depth(args), growth=bool(args.growth), progress=bar
        )
    return jobs_client.gc(client, seconds, progress=bar)


def _depth(args: argparse.Namespace) -> int | None:
    value = getattr(args, "depth", None)
    if value is None:
        value = getattr(args, "nframe", None)
    return None if value is None else int(value)


@contextmanager
def _progress(kind: str, calls: bool, pid: int) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A progress bar on stderr when it is a terminal; otherwise a no-op callback."""
    if not sys.stderr.isatty():
        yield lambda status: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    what = {"profile": "calls" if calls else "sampling", "allocations": "tracing", "gc": "watching"}
    progress = Progress(
        TextColumn(f"[bold]{what[kind]}[/] pid {pid}"),
        BarColumn(),
        TextColumn("{task.fields[note]}"),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )
    with progress:
        task = progress.add_task("job", total=1.0, note="")

        def update(status: dict[str, Any]) -> None:
            detail = status.get("detail") or {}
            note = f"{status['elapsed']:.1f}/{status['duration']:g} s"
            if "ticks" in detail:
                note += f"  {detail['ticks']:,} ticks ({detail.get('rate', 0):.0f}/s)"
            if status.get("stopped_early"):
                note += "  stopping (Ctrl-C)"
            progress.update(task, completed=float(status.get("progress", 0)), note=note)

        yield update


def _emit(
    report: Any, args: argparse.Namespace, kind: str, calls: bool, output: str | None
) -> None:
    """Print the report (or, for profiles with ``-o``, write it instead), as each command does
    for a program it runs: allocations print the table and also write ``-o``."""
    command = f"vmtop {kind}"
    if report.stopped_early:
        print(
            f"{command}: stopped early (Ctrl-C); the report covers what was measured",
            file=sys.stderr,
        )
    if kind == "profile" and not calls:
        print(
            f"{command}: {report.samples:,} thread samples at "
            f"{report.achieved_rate or 0.0:.0f} ticks/s (asked {args.rate or 100:g}/s)"
            f" over {report.duration:.1f} s",
            file=sys.stderr,
        )
    view = report
    if calls:
        view = report.report(
            sort=getattr(args, "sort", None) or "own",
            limit=getattr(args, "limit", None) or 20,
            filter=getattr(args, "filter", None),
        )
    elif kind == "allocations":
        view = report.view(
            by=getattr(args, "by", "bytes"),
            group=getattr(args, "group", "line"),
            limit=getattr(args, "limit", 15),
        )
    if kind == "profile" and output is not None:
        save_report(report, output)
        return
    if getattr(args, "json", False):
        print(view.to_json())
    else:
        print_report(view)
    if output is not None:
        save_report(report, output)
