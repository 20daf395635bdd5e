"""The filter line: `/` opens it, typing filters live (the agent selects), enter keeps the
filter and returns to the table, escape clears it."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input

MAX_FILTER = 200  # the agent refuses longer filters


class FilterInput(Input):
    BINDINGS = [Binding("escape", "clear_filter", "Clear filter")]

    class Closed(Message):
        """The user is done with the filter line (``cleared`` when escape was pressed)."""

        def __init__(self, cleared: bool) -> None:
            super().__init__()
            self.cleared = cleared

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            placeholder="name or coroutine contains… (enter: keep, escape: clear)",
            max_length=MAX_FILTER,
            **kwargs,
        )

    def action_clear_filter(self) -> None:
        self.value = ""
        self.post_message(self.Closed(cleared=True))

    async def action_submit(self) -> None:
        self.post_message(self.Closed(cleared=False))
