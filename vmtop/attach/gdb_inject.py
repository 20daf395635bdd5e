"""Python 3.11-3.13: queue the bootstrap in a live process with gdb, at a safe point.

gdb runs :mod:`vmtop.attach.gdb_script` inside itself (``gdb -batch -p PID -x ...``); the
steps and why each is safe are in that module's docstring and in docs/attach.md. This side
starts gdb in its own session (a Ctrl-C in our terminal must not reach gdb: gdb forwards an
interrupt to the target's process group as SIGINT), reads its ``VMTOP:{json}`` reports,
and enforces the time limit: at the deadline the script detaches by itself; if the user
presses Ctrl-C we ask it to stop through an abort file (it checks every tick) and wait for a
clean detach. Killing gdb is the very last resort, after SIGTERM (on which gdb detaches).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vmtop.attach.bootstrap import started_marker
from vmtop.attach.checks import AttachError, Target

SCRIPT = Path(__file__).with_name("gdb_script.py")
TICK_INTERVAL = 0.1
# Signals whose default action is to be ignored; the first one the target neither catches nor
# blocks is used as the tick (gdb intercepts it and never delivers it).
TICK_CANDIDATES = (signal.SIGURG, signal.SIGWINCH, signal.SIGCHLD)
STARTUP_ALLOWANCE = 10.0  # gdb's own start and attach, beyond the injection budget
DETACH_GRACE = 5.0


@dataclass
class GdbOutcome:
    """What the gdb session did: ``started`` (the bootstrap is running) or ``queued`` (it runs
    when the main thread next executes Python code, unless its deadline passed by then)."""

    state: str
    reports: list[dict[str, object]] = field(default_factory=list)
    output: str = ""
    seconds: float = 0.0


def _mask(pid: int, key: str, task: str | None = None) -> int:
    path = f"/proc/{pid}/task/{task}/status" if task else f"/proc/{pid}/status"
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def tick_signal(pid: int) -> signal.Signals:
    """A default-ignored signal that the target neither catches nor blocks in any thread."""
    caught = _mask(pid, "SigCgt")
    blocked = 0
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            blocked |= _mask(pid, "SigBlk", task)
    for sig in TICK_CANDIDATES:
        if not (caught | blocked) >> (sig - 1) & 1:
            return sig
    return TICK_CANDIDATES[0]


def gdb_command(pid: int) -> list[str]:
    return [
        "gdb",
        "-batch",
        "-nx",
        "--readnever",  # minimal symbols are all we need: skips DWARF loading (~0.7 s)
        "-iex",
        "set auto-load off",
        "-iex",
        "set debuginfod enabled off",
        "-p",
        str(pid),
        "-x",
        str(SCRIPT),
    ]


def _explain(output: str, pid: int) -> str:
    if "Python scripting is not supported" in output:
        return "this gdb was built without Python support, which vmtop needs: install a full gdb"
    if "ptrace: Operation not permitted" in output:
        return (
            f"gdb may not trace pid {pid} (ptrace: Operation not permitted): run as the target's "
            "user or root; in a container add CAP_SYS_PTRACE (docker run --cap-add SYS_PTRACE)"
        )
    if "No such process" in output:
        return f"pid {pid} exited"
    if "unrecognized option" in output and "readnever" in output:
        return "this gdb is too old (vmtop needs gdb 8.2 or newer)"
    last = [line for line in output.strip().splitlines() if line.strip()]
    return "gdb failed: " + (last[-1][:200] if last else "no output")


def inject(
    target: Target,
    source: str,
    deadline: float,
    status_path: Path,
    progress: Callable[[str], None] | None = None,
    mode: str = "queue",
) -> GdbOutcome:
    """Queue ``source`` as a pending call in ``target`` and wake its main thread.

    ``deadline`` is a ``time.time()`` value. ``mode="wake"`` only wakes the main thread into
    the eval loop (for a script that ``sys.remote_exec`` already scheduled). Raises :class:`AttachError` when nothing could be
    queued (the target is then unchanged) and ``KeyboardInterrupt`` after a clean detach when
    the user interrupts.
    """
    abort_file = status_path.with_name("abort")
    env = _gdb_env(target, source, deadline, status_path, abort_file, mode)
    started = time.monotonic()
    proc, lines = _start_gdb(target, env)
    outcome = GdbOutcome(state="")
    hard_deadline = time.monotonic() + max(0.0, deadline - time.time()) + STARTUP_ALLOWANCE
    output, interrupted = _follow(proc, lines, outcome, hard_deadline, abort_file, progress)
    try:
        proc.wait(timeout=DETACH_GRACE)
    except subprocess.TimeoutExpired:
        _stop_gdb(proc, abort_file)
    outcome.output = "".join(output)
    outcome.seconds = time.monotonic() - started
    if interrupted:
        raise KeyboardInterrupt
    errors = [r for r in outcome.reports if r.get("tag") == "error"]
    if errors and not outcome.state:
        raise AttachError(str(errors[0].get("message")).removeprefix("gdb: "))
    if not outcome.state:
        raise AttachError(_explain(outcome.output, target.pid))
    return outcome


def _gdb_env(
    target: Target,
    source: str,
    deadline: float,
    status_path: Path,
    abort_file: Path,
    mode: str,
) -> dict[str, str]:
    """gdb's environment: our script's parameters, and none of the user's Python paths."""
    sig = tick_signal(target.pid)
    params = {
        "pid": target.pid,
        "mode": mode,
        "version": list(target.version),
        "source": source,
        "budget": max(0.5, deadline - time.time()),
        "tick_signal": int(sig),
        "tick_signal_name": sig.name,
        "tick_interval": TICK_INTERVAL,
        "abort_file": str(abort_file),
        "started_file": str(started_marker(status_path)),
    }
    env = dict(os.environ, VMTOP_GDB_PARAMS=json.dumps(params))
    env.pop("PYTHONPATH", None)  # gdb's own Python must not pick up the user's modules
    env.pop("PYTHONHOME", None)
    return env


def _start_gdb(
    target: Target, env: dict[str, str]
) -> tuple[subprocess.Popen[str], queue.Queue[str | None]]:
    """gdb running our script against ``target``, and the queue its output lines arrive on
    (None at the end), filled by a reader thread so the caller can wait with a timeout."""
    try:
        proc = subprocess.Popen(
            gdb_command(target.pid),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        raise AttachError(f"cannot run gdb: {exc.strerror or exc}") from None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="vmtop-gdb-reader", daemon=True).start()
    return proc, lines


def _follow(
    proc: subprocess.Popen[str],
    lines: queue.Queue[str | None],
    outcome: GdbOutcome,
    hard_deadline: float,
    abort_file: Path,
    progress: Callable[[str], None] | None,
) -> tuple[list[str], bool]:
    """Read gdb's output until it ends, noting our script's reports in ``outcome``; stop gdb
    at ``hard_deadline``, and on Ctrl-C ask the script to abort (it detaches cleanly).
    Returns the output lines and whether the user interrupted."""
    output: list[str] = []
    interrupted = False
    while True:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            line = ""
        except KeyboardInterrupt:
            interrupted = True
            abort_file.touch()
            hard_deadline = min(hard_deadline, time.monotonic() + DETACH_GRACE)
            continue
        if line is None:
            return output, interrupted
        if line:
            output.append(line)
            if line.startswith("VMTOP:"):
                try:
                    report = json.loads(line[6:])
                except ValueError:
                    continue
                outcome.reports.append(report)
                tag = str(report.get("tag"))
                if tag in ("started", "left-queued"):
                    outcome.state = "started" if tag == "started" else "queued"
                if progress is not None:
                    progress(_describe(report))
        if time.monotonic() > hard_deadline:
            _stop_gdb(proc, abort_file)
            hard_deadline = float("inf")


def _stop_gdb(proc: subprocess.Popen[str], abort_file: Path) -> None:
    """Ask gdb to detach (abort file, then SIGTERM); SIGKILL only if it ignores both."""
    abort_file.touch()
    for sig, wait in ((None, 2.0), (signal.SIGTERM, DETACH_GRACE), (signal.SIGKILL, 2.0)):
        if proc.poll() is not None:
            return
        if sig is not None:
            with contextlib.suppress(OSError):
                proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)


def _describe(report: dict[str, object]) -> str:
    tag = report.get("tag")
    if tag == "attached":
        return f"gdb attached ({report.get('threads')} threads)"
    if tag == "main":
        return f"main thread: {report.get('state')}"
    if tag == "queued":
        return "bootstrap queued as a pending call"
    if tag == "started":
        return "bootstrap running in the main thread"
    if tag == "left-queued":
        return f"detached; bootstrap still queued ({report.get('reason')})"
    if tag == "detached":
        return "gdb detached"
    return f"{tag}: {report.get('message', '')}"
