"""``ensure_agent``: the socket of PID's agent, loading the agent first if the user agrees.

This is what ``vmtop top PID --inject`` and ``vmtop attach PID`` call before connecting. An
agent that already listens is reused (attach, detach and attach again inject only once).
Otherwise, with the user's consent (a ``confirm`` callable the CLI gives on a terminal,
``--inject``/``--yes`` in scripts), the pre-flight checks run, the bootstrap is injected
(:mod:`.methods`: vmtop's ptrace injector, then gdb, then lldb on 3.11-3.13;
``sys.remote_exec`` on 3.14+) and we wait for it to report. Nothing here reads stdin. Every failure is an :class:`~vmtop.attach.checks.AttachError` with one line
(the CLI turns it into exit code 2); Ctrl-C detaches cleanly and voids a bootstrap that has
not run yet (its status directory disappears, which it checks before doing anything).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from vmtop.attach import methods
from vmtop.attach.bootstrap import bootstrap_source, import_paths, read_status, started_marker
from vmtop.attach.checks import AttachError, Target, describe, preflight
from vmtop.client import ClientError, NoAgent, agent_socket, pid_exists
from vmtop.paths import agent_socket_path

DEFAULT_TIMEOUT = 15.0
STARTED_GRACE = 10.0  # extra wait once the bootstrap runs (an import under GIL contention)
POLL = 0.002  # the status file appears in the last step: look often (a look: ~30 us)
WORKDIR_BASES = ("/tmp", "/dev/shm", "/var/tmp")  # as a target in a container sees them

Progress = Callable[[str], None]
Confirm = Callable[[str], bool]  # the question -> whether the user agreed


def _stderr(message: str) -> None:
    sys.stderr.write(f"vmtop: {message}\n")
    sys.stderr.flush()


def existing_agent(pid: int) -> Path | None:
    """The socket of a live agent in ``pid``; None when there is none (or only a stale file).

    Raises :class:`AttachError` when ``pid`` does not exist or the socket directory is unsafe.
    """
    try:
        path = agent_socket(pid)
    except NoAgent:
        return None
    except ClientError as exc:
        raise AttachError(str(exc)) from None
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return None
    finally:
        probe.close()
    return path


def consent_question(target: Target) -> str:
    """What a caller asks the user before an injection (``confirm`` receives it)."""
    return (
        f"{describe(target.pid)} has no vmtop agent.\n"
        f"Load one into it now? vmtop stops one of its threads for about a millisecond "
        f"(ptrace; gdb or lldb if that fails) to load a small library whose thread imports "
        f"vmtop from {import_paths()[0]} (see docs/attach.md)."
    )


def ensure_agent(
    pid: int,
    inject: bool | None = None,
    yes: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    progress: Progress | None = None,
    method: str = "auto",
    confirm: Confirm | None = None,
) -> Path:
    """Return the socket path of ``pid``'s agent, injecting one when needed and allowed.

    ``inject``: False = never inject; True = inject (after asking ``confirm``, unless
    ``yes``); None = inject only if ``confirm`` says yes, refuse when there is no ``confirm``.
    ``yes`` = inject without asking. ``confirm`` receives the question
    (:func:`consent_question`) and returns the user's answer; the CLI passes one only on a
    terminal. ``timeout`` bounds the whole injection in seconds. ``progress`` receives
    one-line status messages (default: stderr). ``method``: "auto" or one of
    :data:`.methods.CHOICES` to force it. Raises :class:`AttachError` (one line).
    """
    say = progress or _stderr
    found = existing_agent(pid)
    if found is not None:
        return found
    if inject is False:
        raise AttachError(
            f"no vmtop agent in pid {pid} (and --no-inject given): start the program with "
            f"'vmtop run', or use --peek to watch it without loading anything"
        )
    if not (inject or yes or confirm is not None):
        raise AttachError(
            f"no vmtop agent in pid {pid}: pass --inject to load one (see docs/attach.md), "
            f"or --peek to watch it without loading anything"
        )
    methods.check_choice(method)
    target = preflight(pid, import_paths())
    if confirm is not None and not yes and not confirm(consent_question(target)):
        raise AttachError(f"no vmtop agent in pid {pid}; nothing was loaded")
    return inject_agent(target, timeout, say, method)


def inject_agent(target: Target, timeout: float, say: Progress, method: str = "auto") -> Path:
    """Inject the bootstrap into a checked target and wait for its agent's socket."""
    began = time.monotonic()
    deadline = time.time() + timeout
    workdir = _workdir(target)
    try:
        if os.geteuid() == 0 and target.uid != 0:
            os.chown(workdir, target.uid, target.gid)  # the target writes its status here
        status = workdir / "status.json"
        source = bootstrap_source(target.unview(status), deadline, import_paths())
        planned = methods.plan(target, method)
        say(
            f"loading the agent into pid {target.pid} (Python {target.version_text}, "
            f"{' then '.join(planned)})"
        )
        state = methods.inject(target, method, source, deadline, status)
        result = _wait(target, status, deadline, state)
    finally:
        # Gone directory = void bootstrap: a late run (after a timeout or Ctrl-C) does nothing.
        shutil.rmtree(workdir, ignore_errors=True)
    say(f"agent loaded in pid {target.pid} in {time.monotonic() - began:.1f} s")
    return result


def _workdir(target: Target) -> Path:
    """A new private directory (0700) for the attach's status files, where both we and the
    target can reach it: our temporary directory, or for a target in another mount
    namespace its own ``/tmp`` (``/dev/shm``, ``/var/tmp``) through ``/proc/PID/root``."""
    if not target.foreign:
        return Path(tempfile.mkdtemp(prefix="vmtop-attach-"))
    for base in WORKDIR_BASES:
        with contextlib.suppress(OSError):
            return Path(tempfile.mkdtemp(prefix="vmtop-attach-", dir=target.view(base)))
    raise AttachError(
        f"pid {target.pid} runs in another mount namespace and none of "
        f"{', '.join(WORKDIR_BASES)} is writable there: nothing was loaded"
    )


def _wait(target: Target, status: Path, deadline: float, state: str) -> Path:
    pid = target.pid
    marker = started_marker(status)
    while True:
        data = read_status(status)
        if data is not None:
            return _check_status(pid, data)
        if not pid_exists(pid):
            raise AttachError(f"pid {pid} exited during the attach")
        started = state == "started" or marker.exists()
        limit = deadline + (STARTED_GRACE if started else 0.0)
        if time.time() > limit:
            break
        time.sleep(POLL)
    if started:
        raise AttachError(
            f"the bootstrap started in pid {pid} but its agent did not report within "
            f"{STARTED_GRACE:.0f} s (another thread may hold the GIL); it may still finish: "
            f"retry in a moment"
        )
    raise _late(pid)


def _late(pid: int) -> AttachError:
    return AttachError(
        f"pid {pid} did not run the bootstrap in time: its main thread is busy in native "
        f"code or blocked outside Python. Nothing was loaded (the queued bootstrap is void); "
        f"retry later, or use --peek"
    )


def _check_status(pid: int, data: dict[str, object]) -> Path:
    if data.get("late"):
        raise _late(pid)  # it ran just after the deadline and did nothing
    if not data.get("ok"):
        raise AttachError(f"the agent did not start in pid {pid}: {data.get('error')}")
    path = Path(str(data.get("socket")))  # as the target sees it
    try:
        expected = agent_socket_path(pid)
    except OSError:
        raise AttachError(f"pid {pid} exited during the attach") from None
    if path != expected.theirs:
        hint = (
            "unset XDG_RUNTIME_DIR"
            if str(path.parent).startswith("/tmp/vmtop-")
            else f"XDG_RUNTIME_DIR={path.parent.parent}"
        )
        raise AttachError(
            f"the agent in pid {pid} listens on {path}, but this vmtop looks in "
            f"{expected.theirs.parent} (the two see a different XDG_RUNTIME_DIR): rerun with "
            f"{hint}"
        )
    with contextlib.suppress(OSError):
        if expected.path.exists():
            return expected.path
    raise AttachError(f"the agent in pid {pid} reported {path}, which does not exist")


__all__ = [
    "DEFAULT_TIMEOUT",
    "Confirm",
    "consent_question",
    "ensure_agent",
    "existing_agent",
    "inject_agent",
]
