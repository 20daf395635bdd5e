"""Units: every value says its unit; a value that cannot be measured is "–", never 0."""

from __future__ import annotations

DASH = "–"


def count(value: int | float | None) -> str:
    if value is None:
        return DASH
    value = int(value)
    if abs(value) < 100_000:
        return str(value)
    if abs(value) < 100_000_000:
        return f"{value / 1000:.0f}k"
    return f"{value / 1_000_000:.0f}M"


def seconds(value: float | None) -> str:
    """Durations: 850µs, 12.3ms, 1.25s, 3m05s."""
    if value is None:
        return DASH
    if value < 0.001:
        return f"{value * 1e6:.0f}µs"
    if value < 1:
        return f"{value * 1000:.1f}ms"
    if value < 100:
        return f"{value:.2f}s"
    m, s = divmod(int(value), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def nbytes(value: int | float | None) -> str:
    if value is None:
        return DASH
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}%"


def uptime(value: float) -> str:
    value = int(value)
    d, rest = divmod(value, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{d}d " if d else "") + f"{h}:{m:02d}:{s:02d}"


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"
