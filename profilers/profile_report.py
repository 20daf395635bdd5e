"""The sampled call profile report: a call tree (top down) and the top functions by own time."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from profilers.report import Report

if TYPE_CHECKING:
    from profilers.thread_sampler import SampleSet
from profilers.stacks import Frame, StackModel
from profilers.tree import Node, build_tree
from profilers.units import format_seconds, short_location

HIDE_BELOW = 0.01  # tree nodes under 1 % of the total are folded into a note
MAX_DEPTH = 40
TOP_FUNCTIONS = 15


class SampledProfile(Report):
    """What ``vmtop.profile(fn)`` returns: sampled stacks of one run with their wall time.

    ``stacks`` is the :class:`~profilers.stacks.StackModel` (unit "seconds": each sample weighs
    the wall time since the previous one), ready for every flamegraph writer; ``save(path)``
    picks the format from the suffix. ``return_value`` is what the profiled function returned.
    """

    kind = "sampled"
    # Set for a profile of a live process (vmtop.jobs_client.profile): every sample it took,
    # to slice again by task or thread, and the ticks per second the sampler reached.
    sample_set: SampleSet | None = None
    achieved_rate: float | None = None

    def __init__(
        self,
        model: StackModel,
        duration: float,
        samples: int,
        interval: float,
        name: str = "profile",
        return_value: Any = None,
    ) -> None:
        self.model = model
        self.model.name = name
        self.duration = duration
        self.samples = samples
        self.interval = interval
        self.name = name
        self.return_value = return_value

    @property
    def stacks(self) -> StackModel:
        return self.model

    def save(self, path: str | os.PathLike[str], title: str | None = None) -> str:
        """Write a flamegraph (.svg .speedscope.json .json .folded .collapsed .html); returns
        the format name. ``.pstats``/``.callgrind`` need call counts: use ``calls=True``."""
        from profilers import writers

        exporter = writers.exporter_for(path)
        if exporter.model is not StackModel:
            raise ValueError(
                f"{exporter.name} output needs {exporter.needs}: profile with calls=True "
                "(vmtop profile --calls)"
            )
        exporter.save(self.model, path, title=title or f"vmtop profile: {self.name}")
        return exporter.name

    # -- reading ----------------------------------------------------------------------------
    def top_functions(self, n: int = TOP_FUNCTIONS) -> list[tuple[Frame, float, float]]:
        """``(frame, own, total)`` of the ``n`` functions with the most own time."""
        own = self.model.self_weights()
        total = self.model.total_weights()
        ranked = sorted(own.items(), key=lambda item: (-item[1], item[0].label))
        return [(frame, weight, total.get(frame, 0.0)) for frame, weight in ranked[:n]]

    def to_dict(self) -> dict[str, Any]:
        model = self.model
        return {
            "kind": self.kind,
            "name": self.name,
            "unit": model.unit,
            "duration": self.duration,
            "samples": self.samples,
            "interval": self.interval,
            "total": model.total,
            "frames": [
                {"function": f.function, "file": f.file, "line": f.line} for f in model.frames
            ],
            "stacks": [{"frames": list(ids), "weight": w} for ids, w in model.stacks.items()],
            "top_functions": [
                {"function": f.function, "file": f.file, "line": f.line, "own": o, "total": t}
                for f, o, t in self.top_functions()
            ],
        }

    # -- rendering --------------------------------------------------------------------------
    def __rich__(self) -> Group:
        model = self.model
        total = model.total
        header = Text.assemble(
            ("vmtop profile", "bold"),
            f" (sampled): {self.name}  ",
            (f"{self.duration:.3f} s", "bold"),
            f" wall, {self.samples:,} samples (interval {self.interval * 1000:g} ms)",
        )
        if not total:
            return Group(header, Text("no samples: the code ran for less than one interval"))
        return Group(header, Text(""), self._tree(total), Text(""), self._top_table(total))

    def _tree(self, total: float) -> Tree:
        root = build_tree(self.model)
        tree = Tree(Text("call tree (top down)", style="bold"), guide_style="dim")
        hidden = 0
        hidden_weight = 0.0
        deep = 0
        todo: list[tuple[Node, Tree, int]] = [(root, tree, 0)]
        while todo:
            node, parent, depth = todo.pop()
            for child in node.sorted_children():
                if child.total < HIDE_BELOW * total:
                    hidden += child.count()
                    hidden_weight += child.total
                    continue
                if depth >= MAX_DEPTH:
                    deep += 1
                    continue
                branch = parent.add(self._node_label(child, total))
                todo.append((child, branch, depth + 1))
        notes = []
        if hidden:
            notes.append(
                f"{hidden:,} frames under {HIDE_BELOW:.0%} hidden "
                f"({_share(hidden_weight, total)} of the time in all)"
            )
        if deep:
            notes.append(f"{deep:,} branches deeper than {MAX_DEPTH} levels cut")
        if notes:
            tree.add(Text("; ".join(notes), style="dim italic"))
        return tree

    def _node_label(self, node: Node, total: float) -> Text:
        frame = node.frame
        text = Text.assemble(
            (f"{node.total / total:6.1%}", _heat(node.total / total)),
            "  ",
            (_amount(node.total, self.model.unit), "cyan"),
            "  ",
            (frame.function, "bold" if node.own >= HIDE_BELOW * total else ""),
        )
        location = short_location(frame)
        if location:
            text.append(f"  {location}", style="dim")
        if node.children and node.own >= HIDE_BELOW * total:
            text.append(f"  (own {_share(node.own, total)})", style="dim")
        return text

    def _top_table(self, total: float) -> Table:
        table = Table(
            title="top functions by own time", title_justify="left", title_style="bold", box=None
        )
        table.add_column("own", justify="right", style="cyan")
        table.add_column("own %", justify="right")
        table.add_column("total %", justify="right")
        table.add_column("function")
        table.add_column("location", style="dim")
        for frame, own, inclusive in self.top_functions():
            table.add_row(
                _amount(own, self.model.unit),
                Text(_share(own, total), style=_heat(own / total)),
                _share(inclusive, total),
                frame.function,
                short_location(frame),
            )
        return table


def _share(part: float, total: float) -> str:
    return f"{part / total:.1%}" if total else "–"


def _amount(value: float, unit: str) -> str:
    if unit == "seconds":
        return format_seconds(value)
    if unit == "bytes":
        return f"{value:,.0f} B"
    return f"{value:,.0f}"


def _heat(share: float) -> str:
    if share >= 0.5:
        return "bold red"
    if share >= 0.2:
        return "yellow"
    return "green"
