"""Python 3.14+: run the bootstrap with ``sys.remote_exec`` (PEP 768). UNTESTED here.

``sys.remote_exec(pid, path)`` writes the script's path into the target's main thread state
and sets its eval-breaker bit; the target runs the file at its next safe point, on the main
thread, holding the GIL. No ptrace is needed for that part (only the same ptrace rights to
write the target's memory). The file must be readable by the target: it lives in our private
status directory (chowned to the target's user when we are root) and is removed with it.

An idle main thread (an event loop in ``epoll_wait``) executes no bytecode, so it would run the
script only on its next wake-up. When nothing started after :data:`WAKE_AFTER` seconds and
gdb is installed, we wake it with the gdb script in ``wake`` mode: the blocked call returns
EINTR and, in the wrapper's ``PyErr_CheckSignals()``, the main thread runs
``PyRun_SimpleString("")`` -- empty code whose first instruction checks the eval breaker,
which runs the remote script. Without gdb we wait for the program's own next wake-up.

This module could not be exercised here (no 3.14 interpreter on the test machines): it is
written against the PEP and CPython 3.14's sources, and docs/attach.md says so.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from vmtop.attach.bootstrap import started_marker
from vmtop.attach.checks import AttachError, Target

WAKE_AFTER = 0.5


def inject(target: Target, source: str, deadline: float, status_path: Path) -> str:
    """Schedule ``source`` in ``target``; returns "started" or "queued"."""
    remote_exec = getattr(sys, "remote_exec", None)
    if remote_exec is None:
        raise AttachError("this Python has no sys.remote_exec (it needs 3.14 or newer)")
    script = status_path.with_name("bootstrap.py")
    script.write_text(source)
    os.chmod(script, 0o644)
    if os.geteuid() == 0 and target.uid != 0:
        os.chown(script, target.uid, target.gid)
    try:
        remote_exec(target.pid, target.unview(script))
    except PermissionError:
        raise AttachError(
            f"sys.remote_exec may not write into pid {target.pid}: run as its user or root "
            "(ptrace rights are needed)"
        ) from None
    except (RuntimeError, OSError, ValueError) as exc:
        raise AttachError(
            f"sys.remote_exec failed for pid {target.pid}: {exc} (remote debugging may be "
            "disabled in it: PYTHON_DISABLE_REMOTE_DEBUG or -X disable_remote_debug)"
        ) from None
    marker = started_marker(status_path)
    wake_at = time.monotonic() + WAKE_AFTER
    while time.monotonic() < wake_at:
        if marker.exists():
            return "started"
        time.sleep(0.02)
    if shutil.which("gdb") is None:
        return "queued"
    from vmtop.attach import gdb_inject

    try:
        outcome = gdb_inject.inject(target, "", deadline, status_path, mode="wake")
    except AttachError:
        return "queued"  # waking is a courtesy: the script still runs on the next wake-up
    return outcome.state
