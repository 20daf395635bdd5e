"""Agents in the processes that a ``vmtop run`` program starts: forks, spawned interpreters and
subprocesses of the same interpreter, each with a socket of its own pid.

``vmtop run`` marks the tree with ``VMTOP_CHILD_AGENTS=1`` and puts ``vmtop/agent/autostart``
(which holds only a ``sitecustomize.py``) first on ``PYTHONPATH``, the way
``opentelemetry-instrument`` and ``ddtrace-run`` reach child interpreters: every Python that
inherits the environment (multiprocessing spawn and forkserver, ``uvicorn --workers``,
``subprocess.run([sys.executable, ...])``) starts its own agent before its main module runs.
A fork (gunicorn, multiprocessing's fork context) runs no interpreter start-up, so an at-fork
hook starts the child's agent instead; ``vmtop.agent`` has by then closed the parent's
listener in the child (its own at-fork hook is registered first, so it runs first).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

ENV = "VMTOP_CHILD_AGENTS"
AUTOSTART_DIR = Path(__file__).with_name("autostart")

log = logging.getLogger("vmtop.agent")

_fork_hook_installed = False


def enable() -> None:
    """In the root process: every Python process started from now on gets an agent."""
    os.environ[ENV] = "1"
    entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(AUTOSTART_DIR) not in entries:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(AUTOSTART_DIR), *entries])
    install_fork_hook()


def enabled() -> bool:
    return os.environ.get(ENV) == "1"


def install_fork_hook() -> None:
    global _fork_hook_installed
    if not _fork_hook_installed:
        import vmtop.agent  # noqa: F401  (its own at-fork hook must be registered, and run, first)

        os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook_installed = True


def start_in_child() -> None:
    """At interpreter start-up (the autostart ``sitecustomize``): this process's agent, and
    agents for its own forks. Never raises: a program must run whether or not vmtop can."""
    try:
        import vmtop.agent

        install_fork_hook()
        vmtop.agent.start()
    except Exception:
        log.debug("vmtop: no agent in child pid %d", os.getpid(), exc_info=True)


def _after_fork_in_child() -> None:
    if not enabled():  # the program took the variable out: it wants no more agents
        return
    try:
        import vmtop.agent

        vmtop.agent.start()
        _stop_at_multiprocessing_exit()
    except Exception:
        log.debug("vmtop: no agent in forked pid %d", os.getpid(), exc_info=True)


class _Mark:
    """What multiprocessing's after-fork registry holds on to (it keeps weak references)."""


_MARK = _Mark()


def _stop_at_multiprocessing_exit() -> None:
    # A multiprocessing child started by fork or forkserver ends in os._exit: no atexit, so
    # the agent's socket file would stay behind. Its finalizers do run; the registry is
    # cleared at the start of the child's bootstrap, so register from its after-fork list.
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        with contextlib.suppress(Exception):
            mp_util.register_after_fork(_MARK, _register_finalizer)


def _register_finalizer(_: object) -> None:
    import multiprocessing.util

    import vmtop.agent

    multiprocessing.util.Finalize(None, vmtop.agent.stop, exitpriority=0)
