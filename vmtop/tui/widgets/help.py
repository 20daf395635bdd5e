"""The help screen: every key, what it does, and what the colours mean."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from vmtop.tui.viewmodel import BUSY_SHARE, HOG_SHARE, STYLES

KEYS: tuple[tuple[str, str], ...] = (
    ("r t m M", "sort by reductions, time, mailbox, memory (the agent picks the top rows)"),
    ("< >", "previous / next sort column (id, name, state, current order the rows shown)"),
    ("click header", "sort by that column"),
    ("a", "reductions and time: per interval ⇄ totals since attach (etop accumulate)"),
    ("/", "filter by name or coroutine; enter keeps it, escape clears it"),
    ("1 2 3 0", "show tasks / threads / shared queues / all"),
    ("space p", "pause / resume refreshing"),
    ("+ -", "refresh interval longer / shorter"),
    ("enter", "process detail: await chain, waits on, mailbox, memory, history"),
    ("k c", "cancel the selected task (asks first)"),
    ("P C A G", "profile, calls profile, allocations, GC pressure for 5 s; e exports"),
    ("P (detail)", "profile only that task"),
    ("↑ ↓ PgUp PgDn", "move; the cursor stays on its process, the top row stays on top"),
    ("ctrl+p", "command palette"),
    ("?", "this help"),
    ("q", "quit: detach (the agent removes its hooks when the last client leaves)"),
)


def help_renderable(extra: tuple[tuple[str, str], ...] = ()) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for key, what in KEYS + extra:
        table.add_row(key, what)
    table.add_row("", "")
    table.add_row("colours", "")
    table.add_row(
        Text("name / time", style=STYLES["hog"]),
        f"hogging: time in its steps > {HOG_SHARE:.0%} of the interval (CPU for threads)",
    )
    table.add_row(
        Text("name / time", style=STYLES["busy"]),
        f"busy: > {BUSY_SHARE:.0%} of the interval",
    )
    table.add_row(
        Text("mailbox ↑", style=STYLES["grow"]), "mailbox longer than in the previous snapshot"
    )
    table.add_row(Text("mailbox ↑", style=STYLES["flood"]), "… and at least 1000 long")
    table.add_row(Text("–", style="dim"), "cannot be measured for this process (never 0)")
    table.add_row(
        Text("T123 / q4", style=STYLES["thread"]), "threads (T + native id), shared queues (q)"
    )
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, extra: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__()
        self.extra = extra

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(Text("vmtop — keys", style="bold"), id="help-title")
            yield Static(help_renderable(self.extra), id="help-body")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
