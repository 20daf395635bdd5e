"""The ptrace injector's child process: ``python -I -S ptrace_runner.py``, parameters on stdin.

Started by :mod:`vmtop.attach.ptrace_inject` in a session of its own (a Ctrl-C in the user's
terminal never reaches it) with every catchable terminating signal blocked: it only ever
exits between two passes, when no thread of the target is stopped or borrowed. Each pass
lists the target's threads (:mod:`threads`) and hands them to the C injector (``_ptrace``),
which stops them one at a time, takes the first at a safe point, makes it ``dlopen`` the
library and lets it go. Between passes it checks the deadline and the abort file. It writes
one result: ``{"tid": ..., "handle": ..., "passes": ...}`` or ``{"error": "..."}``.

It starts in about 10 ms: nothing from vmtop is imported, the two modules it needs are loaded
from this file's directory, and parameters and result travel as ``marshal`` data (json,
importlib.util and signal's enums would each add milliseconds of imports).
"""

from __future__ import annotations

import _signal
import importlib.machinery
import marshal
import os
import sys
import time
from types import ModuleType

TYPE_CHECKING = False  # not typing's: importing typing would add 8 ms to the start
if TYPE_CHECKING:
    from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
PAUSE = 0.002  # between passes: the target's threads move on meanwhile


def _load(name: str, path: str) -> ModuleType:
    if path.endswith(".py"):
        module = ModuleType(name)
        module.__file__ = path
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), module.__dict__)
        return module
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.machinery.ModuleSpec(name, loader, origin=path)
    extension = loader.create_module(spec)
    loader.exec_module(extension)
    return extension


def run(params: dict[str, Any]) -> dict[str, object]:
    ptrace = _load("_ptrace", params["extension"])
    threads = _load("threads", os.path.join(HERE, "threads.py"))
    pid: int = params["pid"]
    deadline: float = params["deadline"]  # time.monotonic(), shared by both processes
    abort: str = params["abort_file"]
    passes = 0
    while True:
        if os.path.exists(abort):
            return {"error": "interrupted; nothing was loaded"}
        if not os.path.exists(f"/proc/{pid}"):
            return {"error": f"pid {pid} exited"}
        found = threads.candidates(pid)
        caught = threads.caught_signals(pid)
        passes += 1
        try:
            tid, handle, message = ptrace.load_library(
                pid,
                found,
                params["library"],
                params["dlopen"],
                params["dlerror"],
                params["safe_ranges"],
                caught,
                deadline,
            )
        except OSError as exc:
            return {"error": str(exc.strerror or exc), "errno": exc.errno, "passes": passes}
        if tid:
            if not handle:
                return {"error": f"dlopen failed in the target: {message}", "tid": tid}
            return {"tid": tid, "handle": handle, "passes": passes}
        if time.monotonic() > deadline:
            return {
                "error": f"no thread of pid {pid} was at a safe point in {passes} passes "
                "(all of them in native code); nothing was changed",
                "passes": passes,
            }
        time.sleep(PAUSE)


def main() -> None:
    # SIGINT, SIGTERM, SIGHUP, SIGQUIT: only SIGKILL ends it in the middle of a pass.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, {2, 15, 1, 3})
    params = marshal.loads(sys.stdin.buffer.read())
    try:
        result = run(params)
    except Exception as exc:  # reported as a result, never a traceback
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.buffer.write(marshal.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
