"""Python 3.11-3.13 without a debugger: load the bootstrap library with vmtop's ptrace injector.

No debugger's inferior calls (gdb 13 cannot make them on CPUs with AMX: it writes back a short
extended register state). Steps, each argued in docs/attach.md:

1. find ``dlopen`` in the target's libc and the interpreter's code ranges (:mod:`.maps`);
2. write a fresh copy of the payload library with the bootstrap in it (:mod:`.payload`);
3. run :mod:`.ptrace_runner` in a child process (own session, catchable signals blocked, a
   deadline): it stops one thread at a safe point, saves its whole register state, makes it
   call ``dlopen``, restores the state exactly and lets it go (``_ptrace.c``);
4. the library's constructor starts a thread that takes the GIL and runs the bootstrap.

Only one thread of the target stops, for about a millisecond. Raises :class:`AttachError`
with one line when nothing was loaded (the target is then unchanged), ``KeyboardInterrupt``
after the child finished when the user interrupted.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import subprocess
import sys
import time
from pathlib import Path

from vmtop.attach import payload
from vmtop.attach.checks import AttachError, Target
from vmtop.attach.maps import MapsError, dl_functions, interpreter_code, read_maps

RUNNER = Path(__file__).with_name("ptrace_runner.py")
CHILD_ALLOWANCE = 5.0  # the child's own start and one pass, beyond the injection budget


def unavailable() -> str | None:
    """Why this machine cannot use the ptrace injector, or None when it can."""
    machine = os.uname().machine  # platform.machine(), without importing platform (1 ms)
    if sys.platform != "linux" or machine not in ("x86_64", "AMD64"):
        return f"it supports x86-64 Linux only, not {sys.platform} {machine}"
    if payload.built("_ptrace") is None or payload.built("_payload") is None:
        return "its C parts were not built at install (no C compiler then?)"
    return None


def inject(target: Target, source: str, deadline: float, workdir: Path) -> str:
    """Load the bootstrap into ``target``; returns "queued" (it runs once the GIL is free).

    ``deadline`` is a ``time.time()`` value.
    """
    why = unavailable()
    if why is not None:
        raise AttachError(why)
    try:
        ranges = interpreter_code(target.pid, read_maps(target.pid), target.exe)
    except MapsError as exc:
        raise AttachError(str(exc)) from None
    except OSError as exc:
        raise AttachError(f"cannot read pid {target.pid}'s mappings: {exc.strerror}") from None
    theirs, ours = payload.write(target, source, workdir)
    try:
        load_library(target.pid, theirs, ranges, deadline - time.time(), workdir / "abort")
    finally:
        payload.remove(ours)  # loaded or not, the file is not needed any more
    return "queued"


def load_library(
    pid: int, library: str, safe_ranges: list[tuple[int, int]], budget: float, abort_file: Path
) -> dict[str, object]:
    """Make one thread of ``pid`` dlopen ``library`` (a path as the target sees it).

    ``safe_ranges``: code where a running thread may be borrowed. Returns the child's report
    (``tid``, ``handle``, ``passes``); raises :class:`AttachError` when nothing was loaded.
    """
    extension = payload.built("_ptrace")
    if extension is None:
        raise AttachError("the ptrace injector was not built at install")
    try:
        dlopen, dlerror = dl_functions(pid, read_maps(pid))
    except MapsError as exc:
        raise AttachError(str(exc)) from None
    except OSError as exc:
        raise AttachError(f"cannot read pid {pid}'s mappings: {exc.strerror}") from None
    budget = max(0.2, budget)
    params = {
        "pid": pid,
        "extension": str(extension),
        "library": library,
        "dlopen": dlopen,
        "dlerror": dlerror,
        "safe_ranges": safe_ranges,
        "deadline": time.monotonic() + budget,
        "abort_file": str(abort_file),
    }
    result = _run_child(params, budget + CHILD_ALLOWANCE, abort_file)
    if "error" in result:
        raise AttachError(_explain(pid, result))
    return result


def _run_child(params: dict[str, object], limit: float, abort_file: Path) -> dict[str, object]:
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(RUNNER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise AttachError(f"cannot start the injector: {exc.strerror or exc}") from None
    interrupted = False
    data = marshal.dumps(params)
    out = err = b""
    while True:
        try:
            out, err = proc.communicate(data, timeout=limit)
            break
        except subprocess.TimeoutExpired:
            # It never abandons a borrowed thread; past its deadline it is between passes or
            # waiting for a call to return. Stop waiting, never kill it: it finishes alone.
            abort_file.touch()
            raise AttachError("the injector did not finish in time; it stops on its own") from None
        except KeyboardInterrupt:
            # Ask it to stop at the end of its pass and wait for that: a borrowed thread is
            # always given back before it exits.
            interrupted = True
            with contextlib.suppress(OSError):
                abort_file.touch()
            data = b""  # stdin was written already
    if interrupted:
        raise KeyboardInterrupt
    with contextlib.suppress(ValueError, EOFError, TypeError):
        result = marshal.loads(out)
        if isinstance(result, dict):
            return result
    last = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
    return {"error": f"the injector failed (exit {proc.returncode}): {last[:200]}"}


def _explain(pid: int, result: dict[str, object]) -> str:
    message = str(result.get("error"))
    if result.get("errno") == 1:  # EPERM
        return (
            f"may not trace pid {pid} (ptrace: Operation not permitted): run as its user or "
            "root; in a container add CAP_SYS_PTRACE (docker run --cap-add SYS_PTRACE)"
        )
    if result.get("errno") == 3:  # ESRCH
        return f"pid {pid} exited"
    if result.get("errno") == 110:  # ETIMEDOUT: a thread that never reached its stop
        return (
            f"a thread of pid {pid} did not stop when asked (uninterruptible sleep?); "
            "nothing was changed"
        )
    return message


__all__ = ["inject", "load_library", "unavailable"]
