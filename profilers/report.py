"""What every report shares: rich rendering in a terminal, HTML in Jupyter, dict/JSON out.

A report subclass implements ``__rich__`` (a rich renderable) and ``to_dict``; this base turns
those into ``repr()`` for the plain REPL, ``_repr_html_`` for Jupyter and ``to_json``.
"""

from __future__ import annotations

import io
import json
import sys
from types import FrameType
from typing import Any, Generic, Self, TypeVar


class Report:
    """Base of the report objects returned by ``vmtop.profile`` / ``allocations`` / ``gc_pressure``.

    ``stopped_early`` is set on a report of a live process (``vmtop.jobs_client``) whose job was
    ended before its duration (Ctrl-C): it covers less time than was asked for.
    """

    stopped_early: bool = False

    def __rich__(self) -> Any:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def render_text(self, width: int = 100, color: bool = False) -> str:
        """The report as terminal text (ANSI colours when ``color``)."""
        from rich.console import Console

        buf = io.StringIO()
        console = Console(
            file=buf,
            width=width,
            force_terminal=color,
            color_system="truecolor" if color else None,
            legacy_windows=False,
        )
        console.print(self.__rich__())
        return buf.getvalue()

    def __str__(self) -> str:
        return self.render_text()

    def __repr__(self) -> str:
        # The REPL shows the report itself, like pstats' print_stats, not an object address.
        return self.render_text().rstrip("\n")

    def _repr_html_(self) -> str:
        from rich.console import Console

        console = Console(record=True, width=120, file=io.StringIO())
        console.print(self.__rich__())
        return console.export_html(inline_styles=True)


R = TypeVar("R", bound=Report)


class RecordingBlock(Report, Generic[R]):
    """A ``with`` / ``async with`` block that records while it runs and then *is* its report:
    ``block.report`` is set at the end, and every attribute a block lacks is its report's.

    A subclass says what it records with ``_start(caller)`` (``caller``: the frame of the
    ``with`` statement) and ``_stop() -> report``; ``what`` and ``label`` name it in messages.
    """

    what = "report"  # "this {what} is already recording", "no report: the {what} is ..."
    label = "report"  # "<vmtop {label}: recording>"

    def __init__(self) -> None:
        self.report: R | None = None
        self._where = "with block"
        self._recording = False

    def __enter__(self) -> Self:
        self._begin("with block", sys._getframe(1))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._end()

    async def __aenter__(self) -> Self:
        self._begin("async with block", sys._getframe(1))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._end()

    def _start(self, caller: FrameType) -> None:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def _stop(self) -> R:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def _begin(self, block: str, caller: FrameType) -> None:
        from profilers.units import short_path

        if self._recording:
            raise RuntimeError(f"this {self.what} is already recording")
        self._where = f"{block} at {short_path(caller.f_code.co_filename)}:{caller.f_lineno}"
        self.report = None
        self._start(caller)
        self._recording = True

    def _end(self) -> None:
        if self._recording:
            self._recording = False
            self.report = self._stop()

    def _done(self) -> R:
        if self.report is None:
            state = "still recording" if self._recording else "not run yet"
            raise RuntimeError(f"no report: the {self.what} is {state}")
        return self.report

    def to_dict(self) -> dict[str, Any]:
        return self._done().to_dict()

    def __rich__(self) -> Any:
        if self.report is None:
            state = "recording" if self._recording else "not started"
            return f"<vmtop {self.label}: {state}>"
        return self.report.__rich__()

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes the block lacks: top, growth, save, peak, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._done(), name)
