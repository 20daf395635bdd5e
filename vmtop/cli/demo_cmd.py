"""``vmtop demo``: start the bundled demo actor system and watch it in the TUI.

The demo runs as a child process (``python -m vmtop.demo --agent``) in its own session, so
the terminal's Ctrl-C reaches only us; it is terminated when we leave, however we leave
(on Linux it also gets SIGTERM if we are killed outright).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from vmtop.cli import options
from vmtop.cli.errors import CliError
from vmtop.client import AgentClient, ClientError, NoAgent, agent_socket
from vmtop.paths import socket_path

START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the bundled demo actor system and open the TUI on it",
        description="Start the demo (a hot, a slow, a leaky and a blocking actor, a shared "
        "queue, a worker thread and an idle tail) with the agent, and watch it live. "
        "Quitting the TUI (q) stops the demo.",
    )
    p.add_argument(
        "--idle",
        type=options.idle_actors,
        default=300,
        metavar="N",
        help="idle actors (default 300)",
    )
    p.add_argument(
        "--text",
        action="store_true",
        help="top-style text snapshots instead of the TUI (for terminals without a TUI)",
    )
    p.add_argument(
        "--interval",
        "-i",
        type=options.interval,
        default=1.0,
        metavar="S",
        help="seconds between refreshes (default 1)",
    )
    p.set_defaults(func=run)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_demo(idle: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "vmtop.demo", "--agent", "--idle", str(idle)]
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def wait_for_agent(proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> Path:
    """The demo's agent socket, once the demo listens on it; CliError if the demo dies or is
    too slow. A file already at that path does not count: pids are reused, and a process that
    was killed leaves its socket file behind (the demo's agent replaces it when it starts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return agent_socket(proc.pid)
        except NoAgent:
            pass  # not listening yet (no file, or an earlier process's file)
        except ClientError as exc:
            if proc.poll() is None:
                raise CliError(str(exc)) from None
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            detail = f": {' | '.join(tail)}" if tail else ""
            raise CliError(f"the demo exited with code {proc.returncode}{detail}")
        if time.monotonic() > deadline:
            path = socket_path(proc.pid)
            raise CliError(f"the demo's agent did not start within {timeout:.0f} s ({path})")
        time.sleep(0.05)


def stop_demo(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_text(client: AgentClient, interval: float) -> int:
    """``top``-style: clear the screen and print a snapshot every interval, until Ctrl-C."""
    from vmtop.views.top_text import render

    while True:
        time.sleep(interval)
        size = shutil.get_terminal_size((132, 40))
        snap = client.snapshot(limit=max(5, size.lines - 10))
        sys.stdout.write("\x1b[H\x1b[2J" + render(snap, width=size.columns))
        sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    if not args.text and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CliError("the TUI needs a terminal; use 'vmtop demo --text' for text output")
    previous = signal.signal(signal.SIGTERM, _terminate)
    with tempfile.NamedTemporaryFile(prefix="vmtop-demo-", suffix=".log") as log:
        proc = start_demo(args.idle, log)
        try:
            wait_for_agent(proc, Path(log.name), START_TIMEOUT)
            try:
                client = AgentClient(proc.pid).connect()
            except ClientError as exc:
                raise CliError(str(exc)) from None
            if args.text:
                try:
                    return run_text(client, args.interval)
                except KeyboardInterrupt:
                    return 0
                except ClientError as exc:
                    raise CliError(str(exc)) from None
                finally:
                    client.close()
            from vmtop.tui import run_tui

            return run_tui(proc.pid, interval=args.interval, source=client)
        finally:
            stop_demo(proc)
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


__all__ = ["register", "run"]
