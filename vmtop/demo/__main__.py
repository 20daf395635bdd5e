"""``python -m vmtop.demo``: run the demo actor system until SIGINT/SIGTERM or ``--duration``.

Prints one line on stdout once the actors are running and the signal handlers are in place,
and exits 0 on SIGINT, SIGTERM or the end of ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from vmtop.demo.system import DemoConfig, DemoSystem

PROG = "python -m vmtop.demo"


class Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr and exit code 2, as for the vmtop commands (the demo
    is a program of its own: it does not import the vmtop CLI)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="The vmtop demo: an asyncio actor system with a hot, a slow, a leaky, a "
        "blocking and a crashing actor, a shared queue, a worker thread and a long idle tail.",
    )
    parser.add_argument(
        "--idle", type=_count, default=300, metavar="N", help="idle actors (default: 300)"
    )
    parser.add_argument(
        "--duration",
        type=_seconds,
        default=None,
        metavar="S",
        help="stop after S seconds (default: run until SIGINT or SIGTERM)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for payloads and jitter")
    parser.add_argument(
        "--agent", action="store_true", help="start the vmtop agent in this process (opt in)"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log restarts and shutdown on stderr"
    )
    return parser


def start_agent() -> None:
    try:
        import vmtop.agent

        vmtop.agent.start()  # type: ignore[attr-defined,unused-ignore]
    except (ImportError, AttributeError) as exc:
        print(f"vmtop demo: agent not available ({exc}); running without it", file=sys.stderr)


async def serve(config: DemoConfig, duration: float | None, agent: bool = False) -> int:
    """Run the demo until a signal, ``duration`` or a supervisor failure; return the exit code."""
    main_task = asyncio.current_task()
    if main_task is not None:
        main_task.set_name("main")
    if agent:
        start_agent()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    system = DemoSystem(config)
    supervisor = system.start()
    supervisor.add_done_callback(lambda _: stop.set())
    print(
        f"vmtop demo: pid {os.getpid()}, {len(system.actors)} actors under 'supervisor' "
        f"and thread 'disk-writer'; stop with Ctrl-C or SIGTERM",
        flush=True,
    )
    try:
        try:
            async with asyncio.timeout(duration):
                await stop.wait()
        except TimeoutError:
            pass
        if supervisor.done() and not supervisor.cancelled():
            exc = supervisor.exception()
            if exc is not None:
                print(f"vmtop demo: {exc}", file=sys.stderr)
                return 1
        logging.getLogger("vmtop.demo").info("stopping")
        await system.stop()
        return 0
    finally:
        system.disk_writer.stop()
        for sig in signals:
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="vmtop demo: %(message)s",
    )
    config = DemoConfig(idle=args.idle, seed=args.seed)
    try:
        return asyncio.run(serve(config, args.duration, agent=args.agent))
    except KeyboardInterrupt:  # a Ctrl-C before the handlers were installed
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
