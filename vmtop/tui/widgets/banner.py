"""The banner shown when the target exits or the connection drops."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class LostBanner(Static):
    """Hidden until :meth:`lost`; then says what happened and what the user can do."""

    def lost(self, reason: str) -> None:
        text = Text.assemble(
            ("✖ ", "bold"),
            (reason, "bold"),
            " — the table shows the last snapshot; press q to quit",
        )
        self.update(text)
        self.display = True
