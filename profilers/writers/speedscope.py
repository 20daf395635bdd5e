"""speedscope JSON (https://www.speedscope.app/file-format-schema.json).

One ``sampled`` profile: ``samples`` are the model's distinct stacks (indices into
``shared.frames``, root first) and ``weights`` their weights, so 1M samples over 100k distinct
stacks stay 100k entries. Open the file at https://www.speedscope.app or with ``speedscope FILE``.
"""

from __future__ import annotations

import json
from typing import Any

from profilers.stacks import StackModel

SCHEMA = "https://www.speedscope.app/file-format-schema.json"

#: StackModel unit -> speedscope ValueUnit.
UNITS = {
    "samples": "none",
    "seconds": "seconds",
    "bytes": "bytes",
    "calls": "none",
    "count": "none",
}


def exporter() -> str:
    """``vmtop <version>``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"vmtop {version('vmtop')}"
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "vmtop"


def to_dict(model: StackModel, title: str | None = None) -> dict[str, Any]:
    """The speedscope document as plain data."""
    name = title or model.name
    frames: list[dict[str, Any]] = []
    for frame in model.frames:
        entry: dict[str, Any] = {"name": frame.function}
        if frame.file:
            entry["file"] = frame.file
        if frame.line:
            entry["line"] = frame.line
        frames.append(entry)
    samples = [list(ids) for ids in model.stacks]
    weights = [_number(w) for w in model.stacks.values()]
    return {
        "$schema": SCHEMA,
        "exporter": exporter(),
        "name": name,
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": UNITS.get(model.unit, "none"),
                "startValue": 0,
                "endValue": _number(sum(weights)),
                "samples": samples,
                "weights": weights,
            }
        ],
    }


def render(model: StackModel, title: str | None = None) -> str:
    """The model as a speedscope JSON document (compact, one line)."""
    return json.dumps(to_dict(model, title), separators=(",", ":"))


def _number(value: float) -> float:
    # 42.0 -> 42 keeps sample counts integral in the file.
    return int(value) if float(value).is_integer() else value
