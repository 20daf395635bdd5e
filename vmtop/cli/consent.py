"""The CLI's side of "may vmtop load its agent into PID?": a y/N question on the terminal.

:func:`vmtop.attach.ensure_agent` never reads stdin: it takes a ``confirm`` callable. The
commands pass :func:`terminal_confirm` (None when stdin or stderr is not a terminal, so
that scripts get the one-line refusal that tells them about ``--inject``/``--yes``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def _ask(question: str) -> bool:
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def terminal_confirm() -> Callable[[str], bool] | None:
    """A y/N prompt on stderr answered on stdin, or None when either is not a terminal."""
    try:
        interactive = sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        interactive = False
    return _ask if interactive else None


__all__ = ["terminal_confirm"]
