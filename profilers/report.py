"""What every report shares: rich rendering in a terminal, HTML in Jupyter, dict/JSON out.

A report subclass implements ``__rich__`` (a rich renderable) and ``to_dict``; this base turns
those into ``repr()`` for the plain REPL, ``_repr_html_`` for Jupyter and ``to_json``.
"""

from __future__ import annotations

import io
import json
from typing import Any


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
