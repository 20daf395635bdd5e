"""Attach to a Python process that did not opt in: checks, bootstrap, injectors, consent.

``ensure_agent(pid, inject, yes, timeout) -> Path`` is the entry point (:mod:`.ensure`): an
agent that already listens is reused; otherwise, with consent, :func:`.checks.preflight`
vets the target and the bootstrap (:mod:`.bootstrap`) is injected by gdb on Python
3.11-3.13 (:mod:`.gdb_inject`, which runs :mod:`.gdb_script` inside gdb) or by
``sys.remote_exec`` on 3.14+ (:mod:`.remote_exec`). docs/attach.md explains what injection
needs (ptrace rights) and what it risks.
"""

from __future__ import annotations

from vmtop.attach.checks import AttachError, Target, preflight
from vmtop.attach.ensure import DEFAULT_TIMEOUT, ensure_agent, existing_agent

__all__ = [
    "DEFAULT_TIMEOUT",
    "AttachError",
    "Target",
    "ensure_agent",
    "existing_agent",
    "preflight",
]
