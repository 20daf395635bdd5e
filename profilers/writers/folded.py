"""Folded stacks (``root;child;leaf 42``): the lingua franca of flamegraph tools.

Readable by flamegraph.pl, inferno, speedscope and :meth:`StackModel.from_folded`. Labels are
``function (file:line)``; a ``;`` inside a label becomes ``:`` so the line stays parseable.
"""

from __future__ import annotations

from profilers.stacks import StackModel


def render(model: StackModel, title: str | None = None) -> str:
    """The model as folded stacks, one line per distinct stack (``title`` is not stored)."""
    return model.to_folded()
