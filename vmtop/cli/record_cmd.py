"""``vmtop record``: sample a live process (or a command) with py-spy, write a flamegraph.

    vmtop record PID -d 10 -o out.svg
    vmtop record -o out.speedscope.json -- python app.py --port 8080

py-spy samples from outside (nothing is loaded into the target) and writes its raw folded
stacks to a temporary file; we read them into the one stack model
(:mod:`profilers.pyspy_reader`) and write the output with vmtop's own writers, so a recorded
flamegraph looks and behaves like every other vmtop flamegraph. Frames are aggregated per
function (py-spy ``--function``) with full file names, like vmtop's samplers; ``--lines``
keeps py-spy's per-line frames. Ctrl-C stops the recording early and still writes the file.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vmtop.cli import options
from vmtop.cli.common import check_output, output_epilog
from vmtop.cli.errors import CliError

EPILOG = f"""\
{output_epilog()}

examples:
  vmtop record 4242 -d 10 -o app.svg              10 s of a running process
  vmtop record 4242 -o app.svg                    until Ctrl-C
  vmtop record -o run.speedscope.json -- python app.py --port 8080
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "record",
        help="sample a live process (or a command) with py-spy and write a flamegraph",
        description="Sample a running Python process (PID) or a command (after --) with "
        "py-spy, from outside, and write a flamegraph with vmtop's writers. Nothing is "
        "loaded into the target. Ctrl-C stops early and still writes the file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", nargs="*", metavar="PID | -- command", help="pid, or a command")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="output file")
    p.add_argument(
        "-d",
        "--duration",
        type=options.record_duration,
        metavar="S",
        help="seconds to record (default: until Ctrl-C)",
    )
    p.add_argument(
        "-r",
        "--rate",
        type=options.record_rate,
        default=100,
        metavar="HZ",
        help="samples per second (100)",
    )
    p.add_argument("--threads", "-t", action="store_true", help="one flamegraph root per thread")
    p.add_argument("--idle", "-i", action="store_true", help="include idle (waiting) threads")
    p.add_argument("--gil", "-g", action="store_true", help="only samples holding the GIL")
    p.add_argument("--native", "-n", action="store_true", help="include C/C++/Cython frames")
    p.add_argument("--subprocesses", "-s", action="store_true", help="follow child processes")
    p.add_argument(
        "--nonblocking", action="store_true", help="do not pause the target while sampling"
    )
    p.add_argument("--lines", action="store_true", help="one frame per line, not per function")
    p.add_argument("--title", metavar="TEXT", help="title of the flamegraph")
    p.set_defaults(func=run)


def pyspy_command(args: argparse.Namespace, raw: Path, pid: int | None) -> list[str]:
    from vmtop.peek import pyspy_path

    cmd = [pyspy_path(), "record", "--format", "raw", "-o", str(raw), "--rate", str(args.rate)]
    cmd.append("--full-filenames")
    if not args.lines:
        cmd.append("--function")
    for flag in ("threads", "idle", "gil", "native", "subprocesses", "nonblocking"):
        if getattr(args, flag):
            cmd.append(f"--{flag}")
    if pid is not None:
        cmd += ["--pid", str(pid)]
    else:
        if args.duration:
            cmd += ["--duration", str(math.ceil(args.duration))]
        cmd += ["--", *args.run_command]
    return cmd


def _target(args: argparse.Namespace) -> int | None:
    items = list(args.target)
    if items and items[0] == "--":
        items = items[1:]
    if not items:
        raise CliError(
            "give a PID to record, or a command after -- (vmtop record -o f.svg -- python app.py)"
        )
    if len(items) == 1 and items[0].isdigit():
        pid = options.pid(items[0])
        _check_pid(pid)
        return pid
    args.run_command = items
    return None


def _check_pid(pid: int) -> None:
    from vmtop.attach.checks import describe, python_version

    if not os.path.exists(f"/proc/{pid}"):
        raise CliError(f"no process with pid {pid}")
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except PermissionError:
        raise CliError(f"cannot read pid {pid}: run vmtop as its user (or as root)") from None
    except OSError:
        raise CliError(f"{describe(pid)} is not a Python process") from None
    if python_version(pid, exe) is None:
        raise CliError(f"{describe(pid)} is not a CPython process ({os.path.basename(exe)})")


class Progress:
    """One status line on stderr, rewritten in place on a terminal."""

    def __init__(self, what: str, duration: float | None) -> None:
        self.what = what
        self.duration = duration
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last = 0.0
        stop = f"for {duration:g} s" if duration else "until Ctrl-C"
        sys.stderr.write(f"vmtop record: sampling {what} {stop} (Ctrl-C stops and writes)\n")
        sys.stderr.flush()

    def tick(self) -> None:
        now = time.monotonic()
        if not self.tty or now - self.last < 0.5:
            return
        self.last = now
        elapsed = now - self.started
        total = f" / {self.duration:g}" if self.duration else ""
        sys.stderr.write(f"\r  {elapsed:6.1f}{total} s")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 30 + "\r")
            sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from profilers.pyspy_reader import read_raw
    from profilers.writers import save

    exporter = check_output(args.output)
    assert exporter is not None  # -o is required
    pid = _target(args)
    with tempfile.TemporaryDirectory(prefix="vmtop-record-") as tmp:
        raw = Path(tmp) / "samples.txt"
        log = Path(tmp) / "py-spy.log"
        try:
            cmd = pyspy_command(args, raw, pid)
        except Exception as exc:  # py-spy missing: ClientError from vmtop.peek
            raise CliError(str(exc)) from None
        what = f"pid {pid}" if pid is not None else shlex.join(args.run_command)[:80]
        code = _record(cmd, pid, args.duration, log, Progress(what, args.duration))
        text = raw.read_text(errors="replace") if raw.exists() else ""
        if not text.strip():
            message = _pyspy_message(log)
            raise CliError(
                message or f"py-spy recorded no samples of {what} (idle threads need --idle)"
            )
        try:
            model = read_raw(text, name=what)
        except ValueError as exc:
            raise CliError(f"cannot read py-spy's output: {exc}") from None
    title = args.title or f"vmtop record {what}"
    try:
        save(model, args.output, title=title)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    samples = int(model.total)
    hot = max(model.self_weights().items(), key=lambda kv: kv[1], default=None)
    summary = f"wrote {args.output} ({exporter.name}): {samples} samples, {len(model)} stacks"
    if hot is not None and samples:
        summary += f"; hottest: {hot[0].function} ({hot[0].short_file}) {hot[1] / samples:.0%}"
    print(f"vmtop record: {summary}", file=sys.stderr)
    return code


def _record(
    cmd: list[str], pid: int | None, duration: float | None, log: Path, progress: Progress
) -> int:
    """Run py-spy until the duration, its exit, or Ctrl-C; return the exit code to report."""
    with open(log, "w") as log_file:
        if pid is not None:
            # Own session: Ctrl-C reaches us only, and we forward one SIGINT (py-spy then
            # stops sampling and writes what it has).
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
        else:
            # A command: it keeps our terminal (its input, its Ctrl-C); py-spy's messages
            # show up beside its output.
            proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + duration if (duration and pid is not None) else None
        interrupted = False
        try:
            while proc.poll() is None:
                try:
                    proc.wait(timeout=0.1)
                except subprocess.TimeoutExpired:
                    pass
                progress.tick()
                if deadline is not None and time.monotonic() >= deadline:
                    proc.send_signal(signal.SIGINT)
                    deadline = None
        except KeyboardInterrupt:
            interrupted = True
            if pid is not None:
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGINT)
            while True:
                try:
                    proc.wait(timeout=30)
                    break
                except KeyboardInterrupt:
                    continue  # a second Ctrl-C: still let py-spy write the file
                except subprocess.TimeoutExpired:
                    proc.kill()
                    break
        finally:
            progress.done()
    if proc.returncode not in (0, None) and not interrupted and pid is not None:
        message = _pyspy_message(log)
        if message:
            raise CliError(message)
    # Ctrl-C is the normal way to end an open-ended recording of a pid; a command that was
    # interrupted reports it like the shell would.
    return 130 if interrupted and pid is None else 0


def _pyspy_message(log: Path) -> str:
    """py-spy's error, made one line (``Error: ...``), or ''."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in lines:
        if line.startswith("Error:"):
            text = line[len("Error:") :].strip()
            if "Permission denied" in text or "Operation not permitted" in text:
                return f"py-spy may not read the target ({text}): run as its user or root"
            return f"py-spy: {text}"
    return ""
