"""Confirmation before the one action that changes the target: cancelling a task."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmCancel(ModalScreen[bool]):
    """Asks before cancelling; dismisses with True only on an explicit yes."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes, cancel it"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, key: str, name: str, where: str, pid: int | None) -> None:
        super().__init__()
        self.key = key
        self.task_name = name
        self.where = where
        self.pid = pid

    def compose(self) -> ComposeResult:
        target = f"pid {self.pid}" if self.pid else "the target"
        question = Text.assemble(
            ("Cancel task ", "bold"),
            (f"{self.task_name!r}", "bold red"),
            (f" ({self.key})?", "bold"),
            "\n\n",
            f"This calls task.cancel() in {target}: CancelledError is raised inside the task "
            "at its next step. The program decides what happens next.",
        )
        if self.where:
            question.append(f"\n\nnow in: {self.where}", "dim")
        with Vertical(id="confirm-box"):
            yield Static(question, id="confirm-text")
            with Horizontal(id="confirm-buttons"):
                yield Button(Text("Cancel task [y]"), variant="error", id="yes")
                yield Button(Text("Keep it [n]"), variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
