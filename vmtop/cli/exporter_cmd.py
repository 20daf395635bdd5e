"""``vmtop exporter``: serve Prometheus metrics of local agents (docs/prometheus.md)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from vmtop.cli import options
from vmtop.cli.errors import CliError
from vmtop.client import pid_exists


def register(sub: Any) -> None:
    from vmtop.exporter.address import DEFAULT_LISTEN

    host, port = DEFAULT_LISTEN
    p = sub.add_parser(
        "exporter",
        help="serve /metrics for Prometheus from the agents of local processes",
        description="A separate process that reads local vmtop agents over their Unix sockets "
        "(one snapshot per target per scrape) and serves Prometheus metrics on HTTP. "
        "Nothing listens inside the targets.",
    )
    p.add_argument(
        "pid", nargs="*", default=[], type=options.pid, help="process ids of the targets"
    )
    p.add_argument(
        "--all", action="store_true", help="every process of this user that has an agent"
    )
    p.add_argument(
        "--subprocesses",
        action="store_true",
        help="also every descendant of the PIDs that has an agent (workers come and go)",
    )
    p.add_argument(
        "--listen",
        default=f"{host}:{port}",
        metavar="HOST:PORT",
        help=f"address of the /metrics endpoint (default {host}:{port}; port 0: any free one)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vmtop.exporter.address import parse_listen

    try:
        from vmtop.exporter.server import serve
        from vmtop.exporter.targets import Targets
    except ImportError as exc:
        raise CliError(
            f"the exporter needs prometheus_client ({exc}): pip install 'vmtop[exporter]'"
        ) from None
    if bool(args.pid) == bool(args.all):
        raise CliError("give the PIDs to export, or --all (not both)")
    if args.all and args.subprocesses:
        raise CliError("--all already includes every subprocess that has an agent")
    missing = [pid for pid in args.pid if not pid_exists(pid)]
    if missing:
        raise CliError(f"no process with pid {missing[0]}")
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        raise CliError(str(exc)) from None

    def report(message: str) -> None:
        print(f"vmtop exporter: {message}", file=sys.stderr, flush=True)

    targets = Targets(args.pid, args.all, args.subprocesses, report)
    try:
        bound_host, bound_port, httpd = serve(targets, host, port)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    report(f"serving http://{bound_host}:{bound_port}/metrics")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        httpd.shutdown()  # type: ignore[attr-defined]
        targets.close()
    return 0
