"""The stack model: weighted call stacks, the one input of every flamegraph writer.

A recorder (sampler, py-spy reader, tracemalloc, cProfile) produces a :class:`StackModel`;
processors and writers only read it. Stacks are stored root-first as tuples of indices into a
shared frame table, with a weight each (samples, seconds or bytes: see ``unit``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

UNITS = ("samples", "seconds", "bytes", "calls", "count")


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: a function at a source location. ``line`` 0 means unknown."""

    function: str
    file: str = ""
    line: int = 0

    @property
    def label(self) -> str:
        """``function (file:line)``, or just ``function`` when the location is unknown."""
        if not self.file:
            return self.function
        if self.line:
            return f"{self.function} ({self.file}:{self.line})"
        return f"{self.function} ({self.file})"

    @property
    def short_file(self) -> str:
        """The file name without its directory."""
        return self.file.rsplit("/", 1)[-1]

    @classmethod
    def parse(cls, text: str) -> Frame:
        """Inverse of :attr:`label` (used by the folded-stack reader)."""
        text = text.strip()
        if text.endswith(")") and " (" in text:
            function, _, location = text[:-1].rpartition(" (")
            file, sep, line = location.rpartition(":")
            if sep and line.isdigit():
                return cls(function, file, int(line))
            return cls(function, location, 0)
        return cls(text)


@dataclass(slots=True)
class StackModel:
    """Weighted stacks over a shared frame table.

    ``stacks`` maps a root-first tuple of frame indices to its total weight. Adding the same stack
    twice adds the weights, so 1M samples over 100k distinct stacks cost 100k entries.
    """

    unit: str = "samples"
    name: str = "profile"
    frames: list[Frame] = field(default_factory=list)
    stacks: dict[tuple[int, ...], float] = field(default_factory=dict)
    _index: dict[Frame, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unknown unit {self.unit!r}; expected one of {', '.join(UNITS)}")
        if self.frames and not self._index:
            self._index = {frame: i for i, frame in enumerate(self.frames)}

    # -- building ------------------------------------------------------------------------
    def frame_id(self, frame: Frame) -> int:
        """Index of ``frame`` in the frame table, adding it if new."""
        index = self._index.get(frame)
        if index is None:
            index = len(self.frames)
            self.frames.append(frame)
            self._index[frame] = index
        return index

    def add(self, frames: Sequence[Frame], weight: float = 1) -> None:
        """Add one root-first stack with ``weight``; empty stacks and zero weights are ignored."""
        if not frames or weight == 0:
            return
        key = tuple(self.frame_id(f) for f in frames)
        self.stacks[key] = self.stacks.get(key, 0) + weight

    def add_ids(self, ids: tuple[int, ...], weight: float = 1) -> None:
        """Add a stack already expressed as frame indices of this model."""
        if ids and weight:
            self.stacks[ids] = self.stacks.get(ids, 0) + weight

    def merge(self, other: StackModel) -> None:
        """Add every stack of ``other`` (same unit) into this model."""
        if other.unit != self.unit:
            raise ValueError(f"cannot merge {other.unit} into {self.unit}")
        remap = [self.frame_id(f) for f in other.frames]
        for ids, weight in other.stacks.items():
            self.add_ids(tuple(remap[i] for i in ids), weight)

    # -- reading -------------------------------------------------------------------------
    @property
    def total(self) -> float:
        return sum(self.stacks.values())

    def __len__(self) -> int:
        return len(self.stacks)

    def items(self) -> Iterator[tuple[tuple[Frame, ...], float]]:
        """Each stack as frames (root first) with its weight."""
        frames = self.frames
        for ids, weight in self.stacks.items():
            yield tuple(frames[i] for i in ids), weight

    def self_weights(self) -> dict[Frame, float]:
        """Weight of each frame as the leaf of a stack (its own time / bytes)."""
        by_id = [0.0] * len(self.frames)
        for ids, weight in self.stacks.items():
            by_id[ids[-1]] += weight
        return {f: w for f, w in zip(self.frames, by_id, strict=True) if w}

    def total_weights(self) -> dict[Frame, float]:
        """Weight of the stacks each frame appears in, counted once per stack (inclusive)."""
        by_id = [0.0] * len(self.frames)
        for ids, weight in self.stacks.items():
            for i in set(ids):
                by_id[i] += weight
        return {f: w for f, w in zip(self.frames, by_id, strict=True) if w}

    def filtered(self, keep: Iterable[int]) -> StackModel:
        """A model holding only stacks whose root-first ids contain one of ``keep``, cut there."""
        wanted = set(keep)
        out = StackModel(unit=self.unit, name=self.name)
        for ids, weight in self.stacks.items():
            for depth, i in enumerate(ids):
                if i in wanted:
                    out.add([self.frames[j] for j in ids[depth:]], weight)
                    break
        return out

    # -- folded stacks ---------------------------------------------------------------------
    def to_folded(self) -> str:
        """Brendan Gregg's folded format: ``root;child;leaf weight`` one stack a line."""
        lines = []
        labels = [_folded_label(f) for f in self.frames]
        for ids, weight in self.stacks.items():
            w = int(weight) if float(weight).is_integer() else weight
            lines.append(";".join(map(labels.__getitem__, ids)) + f" {w}")
        return "\n".join(lines) + ("\n" if lines else "")

    @classmethod
    def from_folded(cls, text: str, unit: str = "samples", name: str = "profile") -> StackModel:
        """Parse folded stacks (the inverse of :meth:`to_folded`). Bad lines raise ValueError."""
        model = cls(unit=unit, name=name)
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line:
                continue
            stack, sep, count = line.rpartition(" ")
            if not sep or not stack:
                raise ValueError(f"line {lineno}: expected 'frame;frame;... weight'")
            try:
                weight = float(count)
            except ValueError:
                raise ValueError(f"line {lineno}: weight {count!r} is not a number") from None
            model.add([Frame.parse(part) for part in stack.split(";")], weight)
        return model


def _folded_label(frame: Frame) -> str:
    # ';' separates frames in the folded format; keep labels parseable.
    return frame.label.replace(";", ":")
