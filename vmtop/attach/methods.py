"""The injection methods, which ones a target gets, in which order, and running one.

``auto`` on Python 3.11-3.13 tries vmtop's own ptrace injector first (no debugger, one thread
stopped for about a millisecond), then gdb (inferior calls; fails on CPUs with AMX), then lldb.
On 3.14+ ``sys.remote_exec`` comes first (then ptrace and lldb, whose payload library works
there too; vmtop's gdb script is for 3.11-3.13). ``--method`` forces one. A method that fails has changed
nothing in the target (each says so in its module), so the next one may run; an injection
that fails everywhere says what each method tried and why it failed, in one line.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from vmtop.attach import ptrace_inject
from vmtop.attach.checks import REMOTE_EXEC_VERSION, AttachError, Target

CHOICES = ("auto", "ptrace", "gdb", "lldb")
DEBUGGER_ORDER = ("ptrace", "gdb", "lldb")
FIRST_SHARE = 0.6  # of the time left, for a method that has others after it


def check_choice(requested: str) -> None:
    if requested not in CHOICES:
        raise AttachError(f"unknown injection method {requested!r} (one of {', '.join(CHOICES)})")


def plan(target: Target, requested: str = "auto") -> list[str]:
    """The methods to try on ``target``, in order."""
    check_choice(requested)
    if requested != "auto":
        return [requested]
    if target.version >= REMOTE_EXEC_VERSION:
        return ["remote_exec", "ptrace", "lldb"]  # untested here: no 3.14 on these machines
    return list(DEBUGGER_ORDER)


def unavailable(method: str) -> str | None:
    """Why ``method`` cannot run on this machine (None when it can)."""
    if method == "ptrace":
        return ptrace_inject.unavailable()
    if method == "gdb" and shutil.which("gdb") is None:
        return "gdb is not installed"
    if method == "lldb":
        from vmtop.attach import lldb_inject  # the fallbacks load only when tried

        return lldb_inject.unavailable()
    return None


def run(method: str, target: Target, source: str, deadline: float, status: Path) -> str:
    """Inject with one method; "started" or "queued" (see ``ensure._wait``)."""
    workdir = status.parent
    if method == "ptrace":
        return ptrace_inject.inject(target, source, deadline, workdir)
    if method == "lldb":
        from vmtop.attach import lldb_inject

        return lldb_inject.inject(target, source, deadline, workdir)
    if method == "gdb":
        if target.version >= REMOTE_EXEC_VERSION:
            raise AttachError("vmtop's gdb injector is for Python 3.11-3.13")
        from vmtop.attach import gdb_inject

        return gdb_inject.inject(target, source, deadline, status).state
    from vmtop.attach import remote_exec

    return remote_exec.inject(target, source, deadline, status)


def inject(target: Target, requested: str, source: str, deadline: float, status: Path) -> str:
    """Try each planned method until one loads the bootstrap; raise with every reason."""
    failures = []
    planned = plan(target, requested)
    for i, method in enumerate(planned):
        why = unavailable(method)
        if why is None:
            # A method that waits in vain for a safe point must leave the next one some time.
            left = deadline - time.time()
            until = deadline if i == len(planned) - 1 else time.time() + left * FIRST_SHARE
            try:
                return run(method, target, source, until, status)
            except AttachError as exc:
                why = str(exc)
        failures.append(f"{method}: {why}")
    raise AttachError("injection failed: " + "; ".join(failures))


__all__ = ["CHOICES", "check_choice", "inject", "plan", "unavailable"]
