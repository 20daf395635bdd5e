"""Attach to a Python process that did not opt in: checks, bootstrap, injectors, consent.

``ensure_agent(pid, inject, yes, timeout, method=, confirm=) -> Path`` is the entry point
(:mod:`.ensure`): an agent that already listens is reused; otherwise, with consent (from the
``confirm`` callable: nothing here reads stdin), :func:`.checks.preflight` vets the target
and :mod:`.methods` injects the bootstrap (:mod:`.bootstrap`). On Python 3.11-3.13: vmtop's
ptrace injector (:mod:`.ptrace_inject`, which runs :mod:`.ptrace_runner` and the C
``_ptrace`` in a child process to load the ``_payload`` library, :mod:`.payload`, choosing a
thread with :mod:`.threads` and finding ``dlopen`` with :mod:`.maps` and :mod:`.elf`), then
gdb (:mod:`.gdb_inject`, which runs :mod:`.gdb_script` inside gdb), then lldb
(:mod:`.lldb_inject`); on 3.14+ ``sys.remote_exec`` (:mod:`.remote_exec`). Failures are
:class:`AttachError` (one line); the CLI maps them to exit code 2.
docs/attach.md explains what injection needs (ptrace rights) and what it risks.
"""

from __future__ import annotations

from vmtop.attach.checks import AttachError, Target, preflight
from vmtop.attach.ensure import (
    DEFAULT_TIMEOUT,
    Confirm,
    consent_question,
    ensure_agent,
    existing_agent,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "AttachError",
    "Confirm",
    "Target",
    "consent_question",
    "ensure_agent",
    "existing_agent",
    "preflight",
]
