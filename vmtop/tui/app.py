"""The live TUI: ``vmtop attach PID`` and the view ``vmtop demo`` opens.

Data flows one way: :class:`~vmtop.tui.reader.SnapshotReader` (a thread) fetches snapshots
from the source and posts them; :meth:`VmtopApp.on_snapshot_fetched` turns each into row views
(:mod:`vmtop.tui.viewmodel`) and the widgets update in place. User choices (sort, filter,
kinds, interval, pause) change the reader's next request; the agent does the selection, so
only the rows on screen (plus a margin) cross the socket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Label

from vmtop.client import ClientError
from vmtop.records import Snapshot
from vmtop.tui import viewmodel
from vmtop.tui.reader import (
    FetchFailed,
    JobSource,
    LockedSource,
    ReadOnlySource,
    SnapshotFetched,
    SnapshotReader,
    Source,
    TargetLost,
)
from vmtop.tui.widgets.banner import LostBanner
from vmtop.tui.widgets.confirm import ConfirmCancel
from vmtop.tui.widgets.detail import DetailScreen
from vmtop.tui.widgets.filter import FilterInput
from vmtop.tui.widgets.header import NodeHeader, StatusLine
from vmtop.tui.widgets.help import HelpScreen
from vmtop.tui.widgets.table import ProcessTable

FILTER_DEBOUNCE = 0.3  # seconds of no typing before the filter is sent
REPORT_SECONDS = 5.0  # how long P / C / A / G measure

SORT_NAMES = {
    "reductions": "reductions",
    "time": "time",
    "mailbox": "mailbox",
    "memory": "memory",
    "id": "id",
    "name": "name",
    "state": "state",
    "current": "current function",
}


class VmtopApp(App[int]):
    """Main screen: node header, status line, process table, filter line, footer."""

    CSS_PATH = "vmtop.tcss"
    TITLE = "vmtop"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        # priority: handled as the key arrives, so keys typed right after "/" go to the filter
        Binding("slash", "filter", "Filter", key_display="/", priority=True),
        Binding("enter", "detail", "Detail", key_display="⏎"),
        Binding("r", "sort('reductions')", "Reds"),
        Binding("t", "sort('time')", "Time"),
        Binding("m", "sort('mailbox')", "Mbox"),
        Binding("M", "sort('memory')", "Mem"),
        Binding("less_than_sign", "cycle_sort(-1)", "Sort ←", show=False, key_display="<"),
        Binding("greater_than_sign", "cycle_sort(1)", "Sort →", show=False, key_display=">"),
        Binding("a", "accumulate", "Totals"),
        Binding("g", "groups", "Groups"),
        Binding("space,p", "pause", "Pause", key_display="p"),
        Binding("k,c", "cancel_task", "Cancel"),
        Binding("P", "report('profile')", "Profile", show=False),
        Binding("C", "report('calls')", "Calls", show=False),
        Binding("A", "report('allocations')", "Allocs", show=False),
        Binding("G", "report('gc')", "GC", show=False),
        Binding("plus", "interval(1)", "Slower", show=False, key_display="+"),
        Binding("minus", "interval(-1)", "Faster", show=False, key_display="-"),
        Binding("1", "kinds('tasks')", "Tasks", show=False),
        Binding("2", "kinds('threads')", "Threads", show=False),
        Binding("3", "kinds('queues')", "Queues", show=False),
        Binding("0", "kinds('all')", "All", show=False),
    ]

    def __init__(
        self,
        source: Source,
        *,
        pid: int | None = None,
        interval: float = 1.0,
        clock: Callable[[float], str] = viewmodel.default_clock,
    ) -> None:
        super().__init__()
        self.source = LockedSource(source)
        self.pid = pid
        self.state = viewmodel.ViewState(interval=interval)
        self.history = viewmodel.History()
        self.clock = clock
        self.snapshot: Snapshot | None = None
        self.lost_reason: str | None = None
        self.reader = SnapshotReader(self, self.source, self.state.request(), interval)
        self.applied = 0  # snapshots drawn
        self.report_seconds = REPORT_SECONDS
        self.last_client_time = 0.0  # seconds the last snapshot took to draw (view model + table)
        self.last_client_cpu = 0.0  # CPU seconds of the same (what a busy machine cannot inflate)
        self.last_fetch_time = 0.0  # seconds the last snapshot request took (round trip)
        self._changed: asyncio.Event | None = None
        self._warning = ""
        self._filter_timer: Timer | None = None
        self._drawn_request: viewmodel.Request | None = None
        self._mode = source.read_only_note if isinstance(source, ReadOnlySource) else ""
        self._first: SnapshotFetched | None = None  # fetched before the app ran (run_tui)

    # -- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        banner = LostBanner(id="lost")
        banner.display = False
        yield banner
        yield NodeHeader(self.history, self.clock, id="node")
        yield StatusLine(id="status")
        yield ProcessTable(id="processes")
        with Horizontal(id="filter-bar") as bar:
            bar.display = False
            yield Label("filter /", id="filter-label")
            yield FilterInput(id="filter")
        yield Footer()

    def on_mount(self) -> None:
        # The main screen's widgets; queries would search whichever screen is on top.
        self.table = self.query_one(ProcessTable)
        self.header = self.query_one(NodeHeader)
        self.status = self.query_one(StatusLine)
        self.banner = self.query_one(LostBanner)
        self.filter_box = self.query_one(FilterInput)
        self.filter_bar = self.query_one("#filter-bar", Horizontal)
        self._changed = asyncio.Event()
        self.sub_title = f"pid {self.pid}" if self.pid else ""
        self.table.focus()
        self._status()
        if self._first is not None:
            self.post_message(self._first)  # drawn with the first frame
            self._first = None
            self.reader.start(now=False)
        else:
            self.reader.start()

    def fetch_first(self) -> None:
        """Fetch the first snapshot now, before the app runs (``run_tui`` does): the table is
        then filled as the screen first appears, instead of once the reader's first answer
        got through the app's start (20-40 ms later). A failure is left to the reader, which
        then fetches at once and reports it as usual."""
        request = self.state.request()
        t0 = time.perf_counter()
        try:
            snap = self.source.snapshot(request)
        except Exception:
            return
        self._first = SnapshotFetched(snap, request, time.perf_counter() - t0)

    def on_unmount(self) -> None:
        self.detach()

    def detach(self) -> None:
        """Stop fetching and close the connection (the agent removes its hooks when the last
        client leaves). Safe to call more than once."""
        self.reader.stop()
        self.source.close()

    # -- snapshots -------------------------------------------------------------------------
    def on_snapshot_fetched(self, message: SnapshotFetched) -> None:
        if self.lost_reason is not None or not self.screen_stack:
            return  # detached, or shutting down
        snap = message.snapshot
        if (
            self.snapshot is not None
            and snap.taken_at == self.snapshot.taken_at
            and message.request == self._drawn_request
        ):
            self._update_limit()
            return  # the same answer again (a replayed recording): nothing to redraw
        t0, c0 = time.perf_counter(), time.thread_time()
        self._drawn_request = message.request
        self.history.push(snap)
        self.snapshot = snap
        self._warning = ""
        self.header.show(snap)
        current = self.state.request()
        if _same_view(message.request, current):
            self.table.apply(viewmodel.table_rows(snap, self.state, self.history), self.state)
        self._status()
        self._update_limit()
        self.last_client_time = time.perf_counter() - t0
        self.last_client_cpu = time.thread_time() - c0
        self.last_fetch_time = message.elapsed
        self.applied += 1
        top = self.screen_stack[-1]
        if isinstance(top, DetailScreen):
            top.redraw()
        self._notify_changed()

    def on_process_table_scrolled(self, message: ProcessTable.Scrolled) -> None:
        if self.snapshot is not None and self.lost_reason is None:
            self._update_limit()

    def on_fetch_failed(self, message: FetchFailed) -> None:
        self._warning = f"⚠ {message.reason}"
        self._status()

    def on_target_lost(self, message: TargetLost) -> None:
        if self.lost_reason is not None or not self.screen_stack:
            return
        self.lost_reason = message.reason
        self.banner.lost(message.reason)
        if self.pid is not None:
            self.set_timer(0.5, self._check_exited)
        self.table.add_class("-lost")
        self._status()
        self._notify_changed()

    def _check_exited(self) -> None:
        """The agent closes its socket as the target shuts down: say so once it is gone."""
        from vmtop.client import pid_exists

        if self.pid is not None and not pid_exists(self.pid):
            self.lost_reason = f"target pid {self.pid} exited"
            self.banner.lost(self.lost_reason)

    def _status(self) -> None:
        extra = self._warning or self._mode
        if self.lost_reason is not None:
            extra = "DETACHED"
        self.status.show(self.snapshot, self.state, extra)

    def _update_limit(self) -> None:
        table = self.table
        limit = viewmodel.fetch_limit(table.visible_rows, table.first_visible)
        if limit != self.state.limit:
            grew = limit > self.state.limit
            self.state.limit = limit
            self.reader.update(request=self.state.request(), now=grew)  # rows scrolled in: now

    def limit_settled(self) -> bool:
        """The last drawn snapshot was fetched with the limit the current scroll needs."""
        table = self.table
        wanted = viewmodel.fetch_limit(table.visible_rows, table.first_visible)
        return self._drawn_request is not None and self._drawn_request.limit == wanted

    def _notify_changed(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait (without polling) until ``condition()`` holds after a snapshot or a lost
        target; raises TimeoutError. For scripts and tests that drive the app."""
        assert self._changed is not None, "the app is not running"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("condition not met in time")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                if not condition():
                    raise
                return

    async def wait_for_snapshot(
        self, predicate: Callable[[Snapshot], bool] = lambda s: True, timeout: float = 10.0
    ) -> Snapshot:
        """The first drawn snapshot (from now on, or the current one) that matches."""

        def ok() -> bool:
            return self.snapshot is not None and predicate(self.snapshot)

        await self.wait_until(ok, timeout)
        assert self.snapshot is not None
        return self.snapshot

    def _refetch(self) -> None:
        self.reader.update(request=self.state.request(), now=True)
        self._status()

    # -- actions ---------------------------------------------------------------------------
    def action_sort(self, column: str) -> None:
        self.state.set_sort(column)
        self._redraw_now()
        if column in viewmodel.SORT_KEYS:
            self._refetch()

    def action_cycle_sort(self, step: int) -> None:
        before = self.state.sort
        self.state.cycle_sort(step)
        self._redraw_now()
        if self.state.sort != before:
            self._refetch()

    def _redraw_now(self) -> None:
        """Re-label the columns and re-order the rows we have; the next snapshot follows."""
        if self.snapshot is not None:
            rows = viewmodel.table_rows(self.snapshot, self.state, self.history)
            if self.state.order is not None or self.snapshot.sort == self.state.sort:
                self.table.apply(rows, self.state)
            else:  # the agent must select again: only the labels change now
                self.table.apply([self.table.views[k] for k in self.table.order], self.state)
        self._status()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        self.action_sort(str(event.column_key.value))

    def action_accumulate(self) -> None:
        self.state.accumulate = not self.state.accumulate
        self._redraw_now()
        self._refetch()

    def action_groups(self) -> None:
        """Coroutine groups (a web service's handlers, finished tasks folded) or processes."""
        self.state.groups = not self.state.groups
        self._redraw_now()
        self._refetch()

    def action_pause(self) -> None:
        self.state.paused = not self.state.paused
        self.reader.update(paused=self.state.paused, now=not self.state.paused)
        self._status()

    def action_interval(self, step: int) -> None:
        interval = self.state.change_interval(step)
        self.reader.update(interval=interval)
        self._status()

    def action_kinds(self, kinds: str) -> None:
        self.state.kinds = kinds
        self._refetch()

    def action_filter(self) -> None:
        if self.focused is self.filter_box:
            self.filter_box.insert_text_at_cursor("/")  # a "/" typed in the filter itself
            return
        if len(self.screen_stack) > 1:
            return
        self.filter_bar.display = True
        self.filter_box.value = self.state.filter
        # Focus now (not later): keys typed in the same burst as "/" belong to the filter.
        self.screen.set_focus(self.filter_box)

    def on_input_changed(self, event: FilterInput.Changed) -> None:
        # Typing refetches once the user pauses (FILTER_DEBOUNCE), not on every key.
        if event.input.id == "filter" and event.value != self.state.filter:
            if self._filter_timer is not None:
                self._filter_timer.stop()
            self._filter_timer = self.set_timer(FILTER_DEBOUNCE, self._apply_filter)

    def _apply_filter(self) -> None:
        self._filter_timer = None
        value = self.filter_box.value
        if value != self.state.filter:
            self.state.filter = value
            self._refetch()

    def on_filter_input_closed(self, event: FilterInput.Closed) -> None:
        self.filter_bar.display = False
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._apply_filter()
        self.table.focus()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def selected(self) -> tuple[str, str] | None:
        key = self.table.key_at_cursor()
        if key is None:
            return None
        view = self.table.views.get(key)
        return key, view.name if view else key

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_detail()

    def action_detail(self) -> None:
        chosen = self.selected()
        if chosen is None:
            self.notify("no process selected", severity="warning")
            return
        key, name = chosen
        if key.startswith("group:"):
            self.notify("a group has no detail: its tasks are the rows of the process view")
            return
        self.push_screen(DetailScreen(key, name, self.source, self.history.of, self.state.interval))

    def action_cancel_task(self) -> None:
        chosen = self.selected()
        if chosen is None:
            self.notify("no process selected", severity="warning")
            return
        key, name = chosen
        view = self.table.views.get(key)
        where = view.cells[-1].text if view else ""
        self.ask_cancel(key, name, where)

    def on_detail_screen_profile_requested(self, message: DetailScreen.ProfileRequested) -> None:
        self.action_report("profile", message.name)

    def on_detail_screen_cancel_requested(self, message: DetailScreen.CancelRequested) -> None:
        self.ask_cancel(message.key, message.name, message.where)

    def ask_cancel(self, key: str, name: str, where: str = "") -> None:
        if not key.startswith("task:"):
            self.notify("only asyncio tasks can be cancelled", severity="warning")
            return
        if self.lost_reason is not None:
            self.notify(f"detached: {self.lost_reason}", severity="error")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel_worker(key, name)

        self.push_screen(ConfirmCancel(key, name, where, self.pid), answered)

    @work(thread=True, group="cancel")
    def cancel_worker(self, key: str, name: str) -> None:
        try:
            result = self.source.cancel(key)
        except ClientError as exc:
            self.call_from_thread(self.notify, f"cancel {name}: {exc}", severity="error")
            return
        if result.get("cancel_requested"):
            text = f"cancel requested for task {name!r} ({key})"
            self.call_from_thread(self.notify, text)
        else:
            self.call_from_thread(
                self.notify, f"task {name!r} did not accept the cancel", severity="warning"
            )
        self.reader.update(now=True)

    # -- on-demand reports -------------------------------------------------------------------
    def report_client(self) -> Callable[[], Any] | None:
        """How to open a second connection for a report job (None: the source has no jobs)."""
        source = self.source.source
        if self.pid is None or not isinstance(source, JobSource):
            return None
        return lambda: source.job_connection(max(10.0, self.report_seconds * 3))

    def action_report(self, kind: str, task: str | None = None) -> None:
        if self.lost_reason is not None:
            self.notify(f"detached: {self.lost_reason}", severity="error")
            return
        opener = self.report_client()
        if opener is None:
            self.notify("reports need an agent connection (not --peek)", severity="warning")
            return
        # Imported on first use: with the job client and the exporters it is 8-15 ms of an
        # attach's start-up (docs/attach.md, "Attach latency").
        from vmtop.tui.widgets.report import ReportScreen

        self.push_screen(ReportScreen(kind, self.pid, opener, self.report_seconds, task))

    async def action_quit(self) -> None:
        self.detach()
        self.exit(0)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The main screen's keys act (and show in the footer) only on the main screen."""
        return not (action in MAIN_ACTIONS and len(self.screen_stack) > 1)

    # -- command palette -------------------------------------------------------------------
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for column in viewmodel.COLUMN_KEYS:
            name = SORT_NAMES[column]
            yield SystemCommand(
                f"Sort by {name}",
                "the agent selects the top rows"
                if column in viewmodel.SORT_KEYS
                else "order the rows shown",
                lambda c=column: self.action_sort(c),
            )
        yield SystemCommand(
            "Toggle totals", "reductions/time per interval or since attach", self.action_accumulate
        )
        yield SystemCommand("Pause / resume", "stop or restart refreshing", self.action_pause)
        yield SystemCommand("Filter", "filter rows by name", self.action_filter)
        for kinds in viewmodel.KIND_SETS:
            yield SystemCommand(
                f"Show {kinds}", f"rows: {kinds}", lambda k=kinds: self.action_kinds(k)
            )
        yield SystemCommand("Slower refresh", "longer interval", lambda: self.action_interval(1))
        yield SystemCommand("Faster refresh", "shorter interval", lambda: self.action_interval(-1))
        yield SystemCommand("Process detail", "of the selected row", self.action_detail)
        yield SystemCommand(
            "Cancel task", "the selected task (asks first)", self.action_cancel_task
        )
        yield SystemCommand("Keys", "help screen", self.action_help)
        for kind, title in (
            ("profile", "Profile (sampled)"),
            ("calls", "Calls profile (cProfile)"),
            ("allocations", "Allocations (tracemalloc)"),
            ("gc", "GC pressure"),
        ):
            yield SystemCommand(
                f"{title} for {self.report_seconds:g} s",
                "measure the target, then show and export the report",
                lambda k=kind: self.action_report(k),
            )


MAIN_ACTIONS = {b.action.partition("(")[0] for b in VmtopApp.BINDINGS if isinstance(b, Binding)} - {
    "quit"
}


def _same_view(a: viewmodel.Request, b: viewmodel.Request) -> bool:
    """Same rows asked for (the limit may differ)."""
    return (a.sort, a.filter, a.accumulate, a.kinds) == (b.sort, b.filter, b.accumulate, b.kinds)


def run_tui(pid: int, *, interval: float = 1.0, source: Source | None = None) -> int:
    """Run the TUI on ``pid`` until the user quits; returns the exit code.

    ``source`` defaults to a new :class:`~vmtop.client.AgentClient` connection (raises
    :class:`~vmtop.client.ClientError` when there is no agent). The source is closed on exit.
    """
    if source is None:
        from vmtop.client import AgentClient

        source = AgentClient(pid).connect()
    app = VmtopApp(source, pid=pid, interval=interval)
    try:
        app.fetch_first()
        code = app.run()
    finally:
        app.detach()
    if app.lost_reason is not None:
        import sys

        print(f"vmtop: {app.lost_reason}", file=sys.stderr)
    return int(code or 0)
