"""The bootstrap: the few lines of Python an injector makes the target run once.

It must never raise into the target and must cost the thread that runs it almost nothing. So it
is one ``try/except BaseException`` around an ``exec`` in a fresh namespace (nothing is added
to the program's ``__main__``), and that code, on the main thread (gdb, a pending call,
``sys.remote_exec``), only starts a thread (``_thread``) and returns; on an injector's own
thread (the ptrace and lldb payload's) it does that thread's work right there.
It never gives the GIL up (each release waits for a busy holder to let go again, and with
three threads wanting it that adds up to tens of milliseconds: ``threading.Thread.start()``
waits for its thread to run, so it is not used) and imports nothing new: ``import threading``
there is either a dictionary look-up or, when the program never imported it, runs on the main
thread (the ptrace payload and gdb both make sure of that: the first import decides what
``threading.main_thread()`` is). The new thread then:

1. does nothing if the attach already gave up (past ``deadline``, wall clock, or the status
   directory is gone after a timeout or Ctrl-C): a bootstrap that was queued but ran late
   must not load anything the user was told did not happen;
2. appends this vmtop's import directory to ``sys.path`` (appended, so the program's own
   modules always win), imports ``vmtop.agent`` and calls ``start(strict=True)``, with a
   20 µs GIL switch interval meanwhile: against a CPU-bound main thread each of the imports'
   few hundred system calls gives the GIL up and then waits a whole interval (5 ms by
   default) to get it back (the agent came up in 0.37 s at 0.5 ms, 0.24 s at 50 µs, 0.22 s at
   20 µs). It is set before the first import and put back after the agent started, unless
   the program set one of its own meanwhile (the agent's own requests ask for theirs
   through ``profilers.switching`` later). Better still, while it imports and starts the
   agent **the main thread makes way** (``profilers._priority.begin(PAUSE_LIMIT)``: a
   pending call has it give the GIL up at each of its eval-breaker checks, for at most
   ``PAUSE_LIMIT`` s): against a CPU-bound main thread the attach took 0.4-0.7 s sharing
   the GIL at 20 µs switches, 0.13-0.3 s this way (docs/benchmarks.md);
3. marks that it started (``<status>.started``: the injector can stop waiting for the main
   thread), then writes a JSON status file (atomically) that the injector waits for: ``{"ok": true,
   "socket": ...}`` or ``{"ok": false, "error": "..."}``;
4. as it ends, forgets the ``Dummy`` entry that ``threading.current_thread()`` (psutil's
   import asks for it) made for it, a thread that threading did not start.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

_INNER = """\
import _thread
import threading  # a look-up, or on the main thread the first import (see above)


def _vmtop_bootstrap():
    import sys

    # Before anything gives the GIL up: every import below reads files, and each read waits
    # a whole switch interval (5 ms) for a busy thread to let the GIL go again.
    program_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    ours = sys.getswitchinterval()
    urgent = None
    try:
        for path in PATHS:
            if path not in sys.path:
                sys.path.append(path)
        try:
            # The main thread makes way at its eval-breaker checks while the agent imports
            # and starts, for at most PAUSE_LIMIT s (profilers/priority.py).
            from profilers import _priority as urgent

            urgent.begin(PAUSE_LIMIT)
        except BaseException:
            urgent = None
        _vmtop_start()
    finally:
        if urgent is not None:
            urgent.end()
        if sys.getswitchinterval() == ours:  # else the program set its own meanwhile: keep it
            sys.setswitchinterval(program_interval)
        try:
            with threading._active_limbo_lock:
                threading._active.pop(_thread.get_ident(), None)
        except BaseException:
            pass


def _vmtop_start():
    import json, os, sys, time

    status = STATUS

    def write(data):
        data["pid"] = os.getpid()
        tmp = status + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, status)

    try:
        if not os.path.isdir(os.path.dirname(status)):
            return  # the attach gave up (timeout, Ctrl-C) and removed its directory: no-op
        if time.time() > DEADLINE:
            # Too late, but the attach may still be waiting (it saw us start): say so.
            write({"ok": False, "late": True, "error": "the bootstrap ran after the deadline"})
            return
        open(status + ".started", "w").close()
        import vmtop
        import vmtop.agent

        socket = vmtop.agent.start(strict=True)
        write(
            {
                "ok": socket is not None,
                "socket": str(socket) if socket is not None else None,
                "error": None if socket is not None else "vmtop.agent.start() returned None",
                "version": getattr(vmtop, "__version__", "?"),
                "file": getattr(vmtop, "__file__", "?"),
                "python": sys.version.split()[0],
            }
        )
    except BaseException as exc:
        try:
            write({"ok": False, "error": (type(exc).__name__ + ": " + str(exc))[:500]})
        except BaseException:
            pass


if _thread.get_ident() == threading.main_thread().ident:
    _thread.start_new_thread(_vmtop_bootstrap, ())  # return to the program at once
else:
    _vmtop_bootstrap()  # an injector's own thread (ptrace, lldb): it has nothing else to do
"""
SWITCH_INTERVAL = 0.00002  # seconds; see the docstring
PAUSE_LIMIT = 0.3  # seconds the main thread may make way for the agent's import and start


def import_paths() -> list[str]:
    """Directories the target needs on ``sys.path`` to import this vmtop and its helpers.

    vmtop's own parent directory (holding ``vmtop/`` and ``profilers/``), then the
    directories of its optional runtime helpers (psutil) when they live elsewhere.
    """
    import importlib.util

    import vmtop

    paths = [str(Path(vmtop.__file__).resolve().parent.parent)]
    # Found, not imported: importing psutil here would add 10-20 ms to an attach.
    try:
        spec = importlib.util.find_spec("psutil")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        paths.append(str(Path(spec.origin).resolve().parent.parent))
    out: list[str] = []
    for p in paths:
        if p not in out:
            out.append(p)
    return out


def inner_source(status_path: str | os.PathLike[str], deadline: float, paths: list[str]) -> str:
    """The code the target's bootstrap thread runs (constants filled in)."""
    return (
        _INNER.replace("STATUS", repr(os.fspath(status_path)))
        .replace("DEADLINE", repr(float(deadline)))
        .replace("PATHS", repr(list(paths)))
        .replace("SWITCH_INTERVAL", repr(SWITCH_INTERVAL))
        .replace("PAUSE_LIMIT", repr(PAUSE_LIMIT))
    )


def bootstrap_source(
    status_path: str | os.PathLike[str], deadline: float, paths: list[str] | None = None
) -> str:
    """Source for ``PyRun_SimpleString`` / ``sys.remote_exec``: never raises, defines nothing."""
    inner = inner_source(status_path, deadline, import_paths() if paths is None else paths)
    return (
        "try:\n"
        f"    exec({inner!r}, {{'__name__': '__vmtop_bootstrap__'}})\n"
        "except BaseException:\n"
        "    pass\n"
    )


def started_marker(status_path: Path) -> Path:
    """The file the bootstrap thread creates as soon as it runs."""
    return status_path.with_name(status_path.name + ".started")


def read_status(path: Path) -> dict[str, object] | None:
    """The status the bootstrap wrote, or None while there is none (or it is half written)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


__all__ = ["bootstrap_source", "import_paths", "inner_source", "read_status", "started_marker"]
