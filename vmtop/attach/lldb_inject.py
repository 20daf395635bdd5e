"""Python 3.11-3.13, fallback: load the payload library with lldb's expression evaluator.

lldb can call functions in a target where gdb 13 cannot (CPUs with AMX), at the price of
stopping every thread for its whole session (0.5-1 s). It makes the thread it stopped first
call ``dlopen`` on a fresh copy of the payload library (:mod:`.payload`: the same library
the ptrace injector loads, so the same bootstrap runs the same way); with a time limit on the
call and ``unwind-on-error``, a call that cannot finish (that thread was stopped holding a
lock dlopen needs) is unwound and the thread's state restored. lldb sometimes leaves the
target stopped when it detaches, so the target always gets a SIGCONT afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from vmtop.attach import payload
from vmtop.attach.checks import AttachError, Target

CALL_TIMEOUT_US = 2_000_000
STARTUP_ALLOWANCE = 10.0
_RESULT = re.compile(r"\(void \*\) \$\d+ = (0x[0-9a-fA-F]+)")


def unavailable() -> str | None:
    if shutil.which("lldb") is None:
        return "lldb is not installed"
    if payload.built("_payload") is None:
        return "the injector's library was not built at install (no C compiler then?)"
    return None


def command(pid: int, library: str) -> list[str]:
    call = f'((void *(*)(const char *, int))dlopen)("{library}", 4098)'  # RTLD_NOW|NODELETE
    return [
        "lldb",
        "--batch",
        "--no-lldbinit",
        "-p",
        str(pid),
        "-o",
        f"expr --timeout {CALL_TIMEOUT_US} --unwind-on-error true --ignore-breakpoints true "
        f"-- {call}",
        "-o",
        "process detach",
    ]


def inject(target: Target, source: str, deadline: float, workdir: Path) -> str:
    """Load the bootstrap into ``target``; returns "queued" (it runs once the GIL is free)."""
    why = unavailable()
    if why is not None:
        raise AttachError(why)
    theirs, ours = payload.write(target, source, workdir)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # lldb's own Python must not pick up the user's modules
    env.pop("PYTHONHOME", None)
    limit = max(0.5, deadline - time.time()) + STARTUP_ALLOWANCE
    interrupted = False
    try:
        proc = subprocess.Popen(
            command(target.pid, theirs),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,  # a Ctrl-C must not reach lldb (nor, through it, the target)
        )
    except OSError as exc:
        payload.remove(ours)
        raise AttachError(f"cannot run lldb: {exc.strerror or exc}") from None
    out = ""
    try:
        while True:
            try:
                out = proc.communicate(timeout=limit)[0]
                break
            except KeyboardInterrupt:
                interrupted = True  # let it finish its call and detach: it is short
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGTERM)
                out = proc.communicate()[0]
                break
    finally:
        payload.remove(ours)
        with contextlib.suppress(OSError):
            os.kill(target.pid, signal.SIGCONT)  # lldb may leave it stopped
    if interrupted:
        raise KeyboardInterrupt
    found = _RESULT.search(out)
    if found and int(found.group(1), 16):
        return "queued"
    raise AttachError(_explain(out))


def _explain(output: str) -> str:
    if "Operation not permitted" in output or "attach failed" in output:
        last = next((ln for ln in output.splitlines() if "error" in ln.lower()), "attach failed")
        return f"lldb could not attach: {last.strip()[:200]}"
    if _RESULT.search(output):
        return "dlopen returned NULL in the target"
    errors = [ln.strip() for ln in output.splitlines() if ln.strip().startswith("error")]
    last = errors[-1] if errors else (output.strip().splitlines() or ["no output"])[-1]
    return f"lldb failed: {last[:200]}"


__all__ = ["command", "inject", "unavailable"]
