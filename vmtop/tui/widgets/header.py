"""The node header (target, CPU, RSS, run queue, loop lag, GC, sparklines) and status line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget

from profilers.units import truncate
from vmtop.records import Snapshot
from vmtop.tui import viewmodel

_NUMBER = r"(?<![\w#])[-+≥]?\d[\d.,:]*(?:\s?(?:µs|ms|s|%|KiB|MiB|GiB|B|×|k|M))?(?![\w])"


def _line(text: str, style: str = "") -> Text:
    line = Text(text, style=style, no_wrap=True, overflow="ellipsis")
    if not style:
        line.highlight_regex(_NUMBER, "bold")
    return line


class NodeHeader(Widget):
    """What the target is and how it is doing; four sparklines of the last snapshots."""

    def __init__(
        self, history: viewmodel.History, clock: Callable[[float], str], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.history = history
        self.clock = clock
        self.snapshot: Snapshot | None = None

    def show(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.refresh(layout=True)

    def render(self) -> RenderableType:
        width = max(20, self.size.width or 80)
        snap = self.snapshot
        if snap is None:
            return Text("connecting…", style="dim")
        node = snap.node
        title = f"pid {node.pid} · {node.implementation} {node.python} · " + " ".join(node.argv)
        lines: list[Text] = [_line(truncate(title, width), "bold")]
        parts = viewmodel.node_parts(
            node, self.clock(snap.taken_at), snap.interval
        ) + viewmodel.lag_parts(node)
        parts += viewmodel.gc_parts(node)
        lines += [_line(x) for x in viewmodel.pack(parts, width)]
        lines += [
            _line(truncate(x, width), "bold white on red") for x in viewmodel.blocked_lines(snap)
        ]
        lines += self._sparks(width)
        return Text("\n").join(lines)

    def _sparks(self, width: int) -> list[Text]:
        per_line = 4 if width >= 120 else 2
        cell = (width - 2 * (per_line - 1)) // per_line
        value_w, label_w = 10, 6
        spark_w = max(4, cell - label_w - value_w - 2)
        out: list[Text] = []
        line = Text(no_wrap=True)
        for i, s in enumerate(viewmodel.sparks(self.history, spark_w)):
            if i and i % per_line == 0:
                out.append(line)
                line = Text(no_wrap=True)
            elif i:
                line.append("  ")
            line.append(s.label.ljust(label_w), "dim")
            line.append(s.line, "cyan")
            line.append(" " + s.value.rjust(value_w), "bold")
        out.append(line)
        return out


class StatusLine(Widget):
    """One line: interval covered, rows shown of matched, sort, kinds, filter, refresh, pause."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text = ""

    def show(self, snapshot: Snapshot | None, state: viewmodel.ViewState, extra: str = "") -> None:
        text = viewmodel.status_text(snapshot, state)
        if extra:
            text += " · " + extra
        if text != self.text:
            self.text = text
            self.refresh()

    def render(self) -> RenderableType:
        line = Text(self.text, no_wrap=True, overflow="ellipsis", end="")
        line.highlight_words(["PAUSED"], "bold black on yellow")
        return line
