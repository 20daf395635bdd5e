"""The live Textual TUI (``vmtop attach``, ``vmtop demo``): snapshot -> view model -> widgets.

``run_tui(pid, interval=..., source=...)`` is the entry point; Textual is imported only when
it is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmtop.tui.reader import Source


def run_tui(pid: int, *, interval: float = 1.0, source: Source | None = None) -> int:
    from vmtop.tui.app import run_tui as _run

    return _run(pid, interval=interval, source=source)


def __getattr__(name: str) -> Any:
    if name == "VmtopApp":
        from vmtop.tui.app import VmtopApp

        return VmtopApp
    raise AttributeError(f"module 'vmtop.tui' has no attribute {name!r}")


__all__ = ["VmtopApp", "run_tui"]
