"""On-demand reports in the TUI: a profile, a calls profile, allocations or GC pressure of the
target for a few seconds, with a progress bar, then the report (its rich rendering) in a
scrollable view; ``e`` exports it to a path the user picks.

The job runs on its own connection (a second ``AgentClient``) in a worker thread, so the main
table keeps refreshing while the target is measured.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, ProgressBar, Static

from profilers import writers
from profilers.callgraph import CallGraph
from profilers.stacks import StackModel
from vmtop import jobs_client

#: Report kind -> (title, what it shows, default export suffix, the jobs_client function).
REPORTS: dict[str, tuple[str, str, str, Callable[..., Any]]] = {
    "profile": ("Profile", "sampled call tree", "svg", jobs_client.profile),
    "calls": ("Calls profile", "CNT / ACC / OWN (cProfile)", "pstats", jobs_client.calls),
    "allocations": (
        "Allocations",
        "tracemalloc: top sites by bytes and count",
        "svg",
        jobs_client.allocations,
    ),
    "gc": ("GC pressure", "collections and pauses per generation", "json", jobs_client.gc),
}


def export_formats(kind: str) -> str:
    """The suffixes the export prompt offers for ``kind``: the registry's formats the report
    can give (``.json`` is the report itself)."""
    suffixes: list[str] = []
    if kind == "calls":
        suffixes += writers.suffix_list(CallGraph)
    if kind != "gc":
        suffixes += writers.suffix_list(StackModel)
    return " ".join([*suffixes, ".json"])


def default_path(kind: str, pid: int | None, task: str | None) -> str:
    suffix = REPORTS[kind][2]
    scope = f"-{task}" if task else ""
    name = f"vmtop-{pid or 'target'}-{kind}{scope}.{suffix}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def export(report: Any, path: str) -> str:
    """Write ``report`` to ``path`` (format from the suffix); returns what was written."""
    target = Path(path).expanduser()
    save = getattr(report, "save", None)
    as_json = target.name.endswith(".json") and not target.name.endswith(".speedscope.json")
    if callable(save) and not as_json:
        written = save(str(target))
        return f"{target} ({written})" if isinstance(written, str) and written else str(target)
    target.write_text(report.to_json())
    return f"{target} (json)"


class ExportPrompt(ModalScreen[str | None]):
    """Asks where to write the report; the suffix picks the format."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]

    def __init__(self, default: str, formats: str) -> None:
        super().__init__()
        self.default = default
        self.formats = formats

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Static(Text.assemble(("Export to", "bold"), f"  ({self.formats})"))
            yield Input(value=self.default, id="export-path")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class ReportScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,q", "close", "Back"),
        Binding("e", "export", "Export"),
    ]

    def __init__(
        self,
        kind: str,
        pid: int | None,
        open_client: Callable[[], Any],
        seconds: float,
        task: str | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.pid = pid
        self.open_client = open_client
        self.seconds = seconds
        self.task_name = task
        self.report: Any = None
        self.error = ""
        self.done = False
        self._client: Any = None
        self.exported = ""

    def compose(self) -> ComposeResult:
        title, what, _, _ = REPORTS[self.kind]
        scope = f"task {self.task_name!r}" if self.task_name else "whole process"
        yield Static(
            Text.assemble((f" {title} ", "bold reverse"), f"  {what} · {scope}"),
            id="report-title",
        )
        with Vertical(id="report-progress"):
            yield Static(f"measuring for {self.seconds:g} s…", id="report-status")
            yield ProgressBar(total=1.0, show_eta=False, id="report-bar")
        with VerticalScroll(id="report-scroll"):
            yield Static("", id="report-body")
        yield Footer()

    def on_mount(self) -> None:
        self.run_job()

    @work(thread=True, exclusive=True, group="report")
    def run_job(self) -> None:
        try:
            self._client = client = self.open_client()
            run = REPORTS[self.kind][3]
            opts: dict[str, Any] = {"progress": self._progress_from_thread}
            if self.kind == "profile" and self.task_name:
                opts["task"] = self.task_name
            report = run(client, self.seconds, **opts)
        except Exception as exc:  # the job client's errors are user-facing messages
            if self.is_attached:
                self.app.call_from_thread(self._failed, str(exc) or type(exc).__name__)
            return
        finally:
            self._close_client()
        if self.is_attached:
            self.app.call_from_thread(self._show, report)

    def _progress_from_thread(self, status: dict[str, Any]) -> None:
        if self.is_attached:
            self.app.call_from_thread(self._progress, status)

    # The three below run on the app's thread, queued by the job's worker: the user may have
    # closed the screen in between (its widgets are then gone), which must not fail the app.
    def _progress(self, status: dict[str, Any]) -> None:
        if not self.is_attached:
            return
        elapsed = float(status.get("elapsed", 0.0))
        with contextlib.suppress(NoMatches):
            self.query_one(ProgressBar).update(progress=float(status.get("progress", 0.0)))
            self.query_one("#report-status", Static).update(
                f"{status.get('state', '')}: {elapsed:.1f} / {self.seconds:g} s"
            )

    def _show(self, report: Any) -> None:
        self.report = report
        self.done = True
        if not self.is_attached:
            return
        body = report.__rich__() if hasattr(report, "__rich__") else Text(str(report))
        with contextlib.suppress(NoMatches):
            self.query_one("#report-progress").display = False
            self.query_one("#report-body", Static).update(body)

    def _failed(self, reason: str) -> None:
        self.error = reason
        self.done = True
        if not self.is_attached:
            return
        with contextlib.suppress(NoMatches):
            self.query_one("#report-status", Static).update(Text(f"✖ {reason}", style="bold red"))

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def action_close(self) -> None:
        self._close_client()  # a job still running stops with its connection's requests
        self.app.pop_screen()

    def action_export(self) -> None:
        if self.report is None:
            self.notify("nothing to export yet", severity="warning")
            return
        default = default_path(self.kind, self.pid, self.task_name)
        formats = export_formats(self.kind)

        def chosen(path: str | None) -> None:
            if not path:
                return
            try:
                written = export(self.report, path)
            except Exception as exc:
                self.notify(f"export failed: {exc}", severity="error")
                return
            self.notify(f"wrote {written}")
            self.exported = written

        self.app.push_screen(ExportPrompt(default, formats), chosen)
