"""The process table: a DataTable updated in place from each snapshot's row views.

Per snapshot: rows that left are removed, new rows added, changed cells (and only those)
updated, then the rows are put in the snapshot's order. The cursor stays on its process
(the top row stays the top row, like ``top``). Columns are rebuilt only when the width or
the labels (sort marker, totals) change.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from profilers.units import truncate
from vmtop.tui.viewmodel import COLUMNS, GAP, Cell, RowView, ViewState, column_label
from vmtop.tui.viewmodel import column_widths as widths_for

REBUILD_SHARE = 4  # more than 1/4 of the rows gone: clear and add rather than remove each


class RankedText(Text):
    """A cell that knows its row's position in the latest snapshot (to re-order rows)."""

    rank: int = 0


def render_cell(cell: Cell, width: int, right: bool, cls: type[Text] = Text) -> Text:
    text = truncate(cell.text, width)
    text = text.rjust(width) if right else text.ljust(width)
    return cls(" " * GAP + text, style=cell.style, no_wrap=True, end="")


class ProcessTable(DataTable[Text]):
    """Rows keyed by process key ("task:12"); see :mod:`vmtop.tui.viewmodel` for the cells."""

    BINDINGS = [Binding("enter", "select_cursor", "Detail", key_display="⏎")]

    class Scrolled(Message):
        """The first visible row changed: the app may need more rows from the agent."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", cell_padding=0, zebra_stripes=False, **kwargs)
        self.widths: dict[str, int] = {}
        self.labels: tuple[str, ...] = ()
        self.views: dict[str, RowView] = {}
        self.order: list[str] = []
        self._state = ViewState()
        self.updated_cells = 0  # cells written by the last apply() (for the benchmark)

    # -- columns ---------------------------------------------------------------------------
    def _setup(self, width: int, state: ViewState) -> bool:
        widths = widths_for(width)
        labels = tuple(column_label(c, state) for c in COLUMNS)
        if widths == self.widths and labels == self.labels:
            return False
        self.widths, self.labels = widths, labels
        self.clear(columns=True)
        for column, label in zip(COLUMNS, labels, strict=True):
            w = widths[column.key]
            self.add_column(
                render_cell(Cell(label), w, column.right), width=w + GAP, key=column.key
            )
        self.views.clear()
        self.order = []
        return True

    def key_at_cursor(self) -> str | None:
        if not self.row_count:
            return None
        try:
            row_key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return str(row_key.value) if row_key.value is not None else None

    # -- rows ------------------------------------------------------------------------------
    def apply(self, rows: list[RowView], state: ViewState) -> None:
        """Make the table show ``rows`` in this order, touching only what changed."""
        self._state = state
        selected = self.key_at_cursor()
        at_top = self.cursor_row == 0
        old_keys = list(self.order)
        rebuilt = self._setup(self.size.width or 80, state)
        updated = 0
        new_keys = [r.key for r in rows]
        wanted = set(new_keys)
        stale = sum(1 for key in old_keys if key not in wanted)
        if stale * REBUILD_SHARE > len(old_keys) and not rebuilt:
            # Most rows left (a new sort key, a filter): removing them one by one costs
            # O(rows) each in DataTable; starting over is cheaper.
            self.clear()
            self.views.clear()
            old_keys = []
            rebuilt = True
        for key in old_keys:
            if key not in wanted and key in self.views:
                self.remove_row(key)
                del self.views[key]
        for rank, view in enumerate(rows):
            old = self.views.get(view.key)
            if old is None:
                cells = [self._cell(i, c) for i, c in enumerate(view.cells)]
                self.add_row(*cells, key=view.key)
                self._first(view.key).rank = rank
                updated += len(cells)
            else:
                for i, (a, b) in enumerate(zip(old.cells, view.cells, strict=True)):
                    if a != b and i:
                        self.update_cell(view.key, COLUMNS[i].key, self._cell(i, b))
                        updated += 1
                if old.cells[0] != view.cells[0]:
                    self.update_cell(view.key, COLUMNS[0].key, self._cell(0, view.cells[0]))
                    updated += 1
                self._first(view.key).rank = rank
            self.views[view.key] = view
        current = [k for k in old_keys if k in wanted] + [k for k in new_keys if k not in old_keys]
        if current != new_keys:
            self.sort(COLUMNS[0].key, key=lambda cell: cell.rank)
        self.order = new_keys
        self.updated_cells = updated
        self._restore_cursor(selected, at_top)

    def _first(self, key: str) -> RankedText:
        cell = self.get_cell(key, COLUMNS[0].key)
        assert isinstance(cell, RankedText)
        return cell

    def _cell(self, index: int, cell: Cell) -> Text:
        column = COLUMNS[index]
        cls = RankedText if index == 0 else Text
        return render_cell(cell, self.widths[column.key], column.right, cls)

    def _restore_cursor(self, selected: str | None, at_top: bool) -> None:
        if not self.row_count:
            return
        if at_top or selected is None or selected not in self.views:
            row = 0 if at_top else min(self.cursor_row, self.row_count - 1)
        else:
            row = self.get_row_index(selected)
        if row != self.cursor_row:
            self.move_cursor(row=row, animate=False)

    def on_resize(self) -> None:
        if self.views and widths_for(self.size.width) != self.widths:
            views = [self.views[k] for k in self.order]
            self.apply(views, self._state)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if round(old_value) != round(new_value):
            self.post_message(self.Scrolled())

    @property
    def visible_rows(self) -> int:
        return max(1, self.size.height - 1)

    @property
    def first_visible(self) -> int:
        return int(self.scroll_y)
