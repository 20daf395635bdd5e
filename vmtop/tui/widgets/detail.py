"""Process detail: await chain (or thread stack) with source lines, what it waits on, mailbox
preview, memory estimate and what it means, and the history of its reductions and mailbox.

The detail is fetched on a worker thread every refresh interval while the screen is open;
``k``/``c`` cancels the task after a confirmation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from profilers import units
from vmtop.client import ClientError
from vmtop.tui.reader import LockedSource
from vmtop.tui.viewmodel import ProcessHistory, sparkline

HISTORY_WIDTH = 40
DETAIL_MIN_INTERVAL = 0.5  # seconds between detail refreshes, at least


def _short(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _frames(frames: list[dict[str, Any]], title: str, innermost_last: bool) -> list[Text]:
    out = [Text(title, style="bold underline")]
    if not frames:
        out.append(Text("  (no Python frames: not started, finished, or in C code)", "dim"))
    n = len(frames)
    for i, frame in enumerate(frames):
        here = i == n - 1 if innermost_last else i == 0
        head = Text(f"{'→' if here else ' '} {frame.get('function', '?')}", style="bold")
        head.append(f"  {_short(str(frame.get('file', '')))}:{frame.get('line', '?')}", "cyan")
        head.append(f"  {frame.get('file', '')}", "dim")
        head.no_wrap, head.overflow = True, "ellipsis"
        out.append(head)
        code = str(frame.get("code") or "")
        if code:
            out.append(Text(f"      {code}", style="yellow" if here else ""))
        local_vars = frame.get("locals") or {}
        if local_vars:
            shown = ", ".join(f"{k}={v}" for k, v in list(local_vars.items())[:8])
            more = f" (+{len(local_vars) - 8})" if len(local_vars) > 8 else ""
            out.append(Text(f"      {shown}{more}", "dim", no_wrap=True, overflow="ellipsis"))
    return out


def _mailbox(boxes: list[dict[str, Any]]) -> list[Text]:
    out = [Text("Mailbox", style="bold underline")]
    if not boxes:
        out.append(Text("  no queue seen with this process as its consumer", "dim"))
    for box in boxes:
        maxsize = box.get("maxsize")
        bound = f" of {maxsize}" if maxsize else " (unbounded)"
        out.append(
            Text(
                f"  {box.get('queue', '?')}: {units.count(box.get('length'))} items{bound}, "
                f"{units.count(box.get('putters'))} blocked putters"
            )
        )
        preview = box.get("preview") or []
        for item in preview:
            out.append(Text(f"    {item}", "dim", no_wrap=True, overflow="ellipsis"))
        length = box.get("length") or 0
        if length > len(preview):
            out.append(Text(f"    … {length - len(preview)} more", style="dim"))
    return out


def _history(history: ProcessHistory | None, kind: str) -> list[Text]:
    out = [Text("History (one point per refresh, while the row is fetched)", "bold underline")]
    if history is None or not history.mailbox:
        out.append(Text("  none yet", style="dim"))
        return out
    series: list[tuple[str, list[float | None], Callable[[float | None], str]]] = []
    if kind == "thread":
        series.append(("cpu", list(history.time), units.seconds))
    else:
        series.append(("reductions", list(history.reductions), units.count))
        series.append(("time", list(history.time), units.seconds))
    series.append(("mailbox", list(history.mailbox), units.count))
    for label, values, fmt in series:
        last = values[-1] if values else None
        line = Text(f"  {label:<11}", style="dim")
        line.append(sparkline(values, HISTORY_WIDTH), "cyan")
        line.append(f"  {fmt(last)}", "bold")
        known = [v for v in values if v is not None]
        if known:
            line.append(f"  max {fmt(max(known))}", "dim")
        out.append(line)
    return out


def render_detail(data: dict[str, Any], history: ProcessHistory | None) -> RenderableType:
    """The detail dict of the agent (task, thread or shared queue) as one scrollable page."""
    kind = str(data.get("kind", ""))
    parts: list[RenderableType] = []
    facts: list[tuple[str, str]] = [("state", str(data.get("state", units.DASH)))]
    if kind == "task":
        facts += [
            ("coroutine", str(data.get("coro") or units.DASH)),
            ("reductions", f"{units.count(data.get('reductions_total'))} steps since attach"),
            ("time", f"{units.seconds(data.get('time_total'))} in its steps since attach"),
            ("waits on", str(data.get("waiting_on") or units.DASH)),
        ]
        if data.get("parent"):  # Trio: the task whose nursery holds it
            facts.append(("parent", str(data["parent"])))
        if data.get("cancelling"):
            facts.append(("cancelling", "yes: a cancel was requested"))
        if data.get("done"):
            facts.append(("done", "yes"))
    elif kind == "thread":
        facts += [
            ("cpu", f"{units.seconds(data.get('cpu'))} thread CPU time"),
            ("daemon", "yes" if data.get("daemon") else "no"),
        ]
        if data.get("runtime") == "pykka":  # a Pykka actor: its thread, plus what it handles
            facts += [
                ("actor", f"{data.get('actor_class')} {data.get('urn')}"),
                ("messages", f"{units.count(data.get('messages_total'))} taken since attach"),
                ("handling", str(data.get("handling") or units.DASH)),
            ]
    elif kind == "queue":
        consumers = data.get("consumers") or []
        facts += [
            ("length", units.count(data.get("length"))),
            ("putters", f"{units.count(data.get('putters'))} blocked"),
            ("consumers", ", ".join(map(str, consumers)) or units.DASH),
        ]
    grid = Text()
    for i, (k, v) in enumerate(facts):
        grid.append(f"{k:>11}  ", "dim")
        grid.append(v, "bold")
        if i < len(facts) - 1:
            grid.append("\n")
    parts += [grid, Text()]
    parts += _history(history, kind)
    parts.append(Text())
    if kind == "task":
        parts += _frames(data.get("await_chain") or [], "Await chain (outermost first)", True)
    elif kind == "thread":
        parts += _frames(data.get("stack") or [], "Stack (outermost first)", True)
    if kind in ("task", "thread"):
        parts.append(Text())
        parts += _mailbox(data.get("mailbox") or [])
        parts.append(Text())
        parts.append(Text("Memory (estimate)", style="bold underline"))
        parts.append(Text(f"  ≈ {units.format_bytes(data.get('memory'))}", style="bold"))
        note = str(data.get("memory_note") or "").replace("``", "")
        if note:
            parts.append(Text(f"  {note}", style="dim"))
    elif kind == "queue":
        parts.append(Text("Items (first ones)", style="bold underline"))
        for item in data.get("preview") or []:
            parts.append(Text(f"  {item}", "dim", no_wrap=True, overflow="ellipsis"))
    return Group(*parts)


class DetailScreen(Screen[None]):
    """The detail of one row. What it cannot do itself (profile the task, cancel it after a
    confirmation) it asks the app for with a message: attributes down, messages up."""

    class ProfileRequested(Message):
        """Profile the task ``name`` (the app opens the report screen)."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    class CancelRequested(Message):
        """Cancel task ``key`` (the app asks first); ``where`` is what it is awaiting."""

        def __init__(self, key: str, name: str, where: str) -> None:
            super().__init__()
            self.key = key
            self.name = name
            self.where = where

    BINDINGS = [
        Binding("escape,q", "close", "Back"),
        Binding("k,c", "cancel_task", "Cancel task"),
        Binding("r", "refresh_detail", "Refresh"),
        Binding("P", "profile_task", "Profile task"),
    ]

    def __init__(
        self,
        key: str,
        name: str,
        source: LockedSource,
        history: Callable[[str], ProcessHistory | None],
        interval: float,
    ) -> None:
        super().__init__()
        self.key = key
        self.process_name = name
        self.source = source
        self.history = history
        self.interval = interval
        self.data: dict[str, Any] | None = None
        self.error = ""
        self.fetches = 0

    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="detail-title")
        with VerticalScroll(id="detail-scroll"):
            yield Static(Text("loading…", style="dim"), id="detail-body")
        yield Footer()

    def _title(self) -> Text:
        kind = self.key.partition(":")[0]
        title = Text.assemble(
            (f" {kind} ", "bold reverse"), " ", (self.process_name, "bold"), f"  {self.key}"
        )
        if self.error:
            title.append(f"  ✖ {self.error}", "bold red")
        return title

    def on_mount(self) -> None:
        self.fetch()
        self.set_interval(max(DETAIL_MIN_INTERVAL, self.interval), self.fetch)

    @work(thread=True, exclusive=True, group="detail")
    def fetch(self) -> None:
        try:
            data = self.source.detail(self.key)
        except ClientError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        except Exception as exc:
            self.app.call_from_thread(self._failed, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._show, data)

    def _show(self, data: dict[str, Any]) -> None:
        self.fetches += 1
        if data == self.data and not self.error:
            return  # nothing changed: no redraw
        self.data = data
        self.error = ""
        self.process_name = str(data.get("name", self.process_name))
        self.redraw()

    def _failed(self, reason: str) -> None:
        self.error = reason
        self.redraw()

    def redraw(self) -> None:
        self.query_one("#detail-title", Static).update(self._title())
        if self.data is not None:
            body = render_detail(self.data, self.history(self.key))
            self.query_one("#detail-body", Static).update(body)

    def action_close(self) -> None:
        self.app.pop_screen()

    def action_refresh_detail(self) -> None:
        self.fetch()

    def action_profile_task(self) -> None:
        if not self.key.startswith("task:"):
            self.notify("a task profile needs a task; P on the main screen profiles all")
            return
        self.post_message(self.ProfileRequested(self.process_name))

    def action_cancel_task(self) -> None:
        where = ""
        if self.data and self.data.get("await_chain"):
            inner = self.data["await_chain"][-1]
            where = (
                f"{inner.get('function')} ({_short(str(inner.get('file')))}:{inner.get('line')})"
            )
        self.post_message(self.CancelRequested(self.key, self.process_name, where))
