"""A self-contained interactive SVG flamegraph, written from scratch for vmtop.

One ``<g class="frame">`` (``<title>`` tooltip, ``<rect>``, ``<text>``) per node of the call tree
that is at least ``min_width`` pixels wide at the drawing width (default 0.1 px of 1200 px, that is
1/11 800 of the total weight). A narrower node is left out with its whole subtree: its weight
still counts in its parent, which shows it as a gap at the parent's right end (children are laid
out heaviest first). Zooming in the browser rescales the drawn frames; it cannot bring back frames
that were left out, so render a filtered model (``StackModel.filtered``) to look deeper.

The inline script (``flamegraph.js`` beside this module) gives click-to-zoom, a reset control,
search (``Search`` button, Ctrl-F or ``/``; matches highlighted, ``Matched: x.x%`` of the total
weight with nested matches counted once) and hover details in a status line.

Colours: a warm hue chosen by a stable hash of the function name for your code, an aqua hue for
frames from site-packages / dist-packages / the standard library, magenta for search matches.
"""

from __future__ import annotations

import colorsys
import re
import sys
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from importlib import resources
from itertools import accumulate
from operator import itemgetter

from profilers.stacks import Frame, StackModel

WIDTH = 1200
MIN_WIDTH = 0.1
FRAME_HEIGHT = 16
FONT_SIZE = 11
CHAR_WIDTH = FONT_SIZE * 0.6  # monospace advance, so labels are truncated to fit exactly
TEXT_PAD = 3
PAD = 10
HEADER = 66
FOOTER = 30

ROOT_LABEL = "all"

#: A box of the layout: (depth, start weight, weight, frame index or -1 for the root).
Box = tuple[int, float, float, int]

_LIBRARY = re.compile(
    r"[/\\](?:site|dist)-packages[/\\]"
    r"|[/\\]lib(?:64)?[/\\](?:python|pypy)\d[\d.]*[/\\]"
    r"|^<frozen "
    r"|[/\\]Lib[/\\]"
)
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_LOCATION = re.compile(r"^(.*) \(([^()]*)\)$", re.DOTALL)
_XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})


# -- text -------------------------------------------------------------------------------------
def escape(text: str) -> str:
    """Text made safe for XML content and attribute values (also drops invalid XML chars)."""
    return _INVALID_XML.sub("\ufffd", text).translate(_XML_ESCAPES)


def display_label(label: str) -> str:
    """What a frame box shows: the label with the directory of its file dropped.

    ``handle (/usr/lib/python3.11/asyncio/events.py:80)`` -> ``handle (events.py:80)``. The
    inline script applies the same rule when it redraws labels after a zoom.
    """
    match = _LOCATION.match(label)
    if not match:
        return label
    function, location = match.groups()
    return f"{function} ({location[location.rfind('/') + 1 :]})"


def fit_text(text: str, width: float) -> str:
    """``text`` cut (with ``..``) to fit a box ``width`` pixels wide; empty below 3 chars."""
    room = int((width - 2 * TEXT_PAD) / CHAR_WIDTH)
    if room < 3:
        return ""
    return text if len(text) <= room else text[: room - 2] + ".."


_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_weight(value: float, unit: str) -> str:
    """A weight with its unit: ``1,234 samples``, ``1.5 MiB``, ``12.3 ms``, ``7 calls``."""
    if unit == "bytes":
        size = float(value)
        for name in _BYTE_UNITS:
            if abs(size) < 1024 or name == _BYTE_UNITS[-1]:
                return f"{size:,.0f} B" if name == "B" else f"{size:,.1f} {name}"
            size /= 1024
    if unit == "seconds":
        seconds = float(value)
        if abs(seconds) >= 1 or seconds == 0:
            return f"{seconds:,.2f} s"
        if abs(seconds) >= 1e-3:
            return f"{seconds * 1e3:.1f} ms"
        return f"{seconds * 1e6:.0f} µs"
    number = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    if unit == "samples":
        return f"{number} sample" if value == 1 else f"{number} samples"
    if unit == "calls":
        return f"{number} call" if value == 1 else f"{number} calls"
    return number


# -- colour -----------------------------------------------------------------------------------
def is_library(frame: Frame) -> bool:
    """True for frames of installed packages and the standard library (by file path)."""
    return bool(frame.file) and _LIBRARY.search(frame.file) is not None


def frame_colour(frame: Frame) -> str:
    """A stable colour for a frame: warm for your code, aqua for libraries / stdlib."""
    h = zlib.crc32(frame.function.encode("utf-8", "surrogatepass"))
    a, b, c = (h & 0xFF) / 255, ((h >> 8) & 0xFF) / 255, ((h >> 16) & 0xFF) / 255
    if is_library(frame):
        hue, light, sat = 0.48 + 0.07 * a, 0.62 + 0.10 * b, 0.40 + 0.20 * c
    else:
        hue, light, sat = 0.15 * a, 0.58 + 0.10 * b, 0.75 + 0.20 * c
    r, g, bl = colorsys.hls_to_rgb(hue, light, sat)
    return f"rgb({round(r * 255)},{round(g * 255)},{round(bl * 255)})"


ROOT_COLOUR = "rgb(210,205,200)"
LIBRARY_SWATCH = frame_colour(Frame("library", "/usr/lib/python3/site-packages/x.py"))
USER_SWATCH = frame_colour(Frame("your_code", "app.py"))


# -- layout -----------------------------------------------------------------------------------
def layout(model: StackModel, min_weight: float = 0.0) -> tuple[list[Box], float]:
    """The call tree's nodes with weight >= ``min_weight``, each as a :data:`Box`, depth first,
    and the weight left out (the total weight of the nodes too light to draw, whose parents are
    drawn).

    Children are placed heaviest first (ties by label) from their parent's start. Only visible
    nodes are built: the stacks are sorted once, so the stacks under any node form one run and
    its children are sub-runs found by galloping and binary search; the cost follows what is
    drawn, not the size of the full tree. No recursion: stacks 1000 frames deep are fine.
    """
    ordered = sorted(((ids, w) for ids, w in model.stacks.items() if w > 0), key=_sort_key)
    if not ordered:
        return [], 0
    keys = [ids for ids, _ in ordered]
    prefix = [0, *accumulate(w for _, w in ordered)]  # weight of keys[lo:hi] by subtraction
    del ordered
    frames = model.frames
    boxes: list[Box] = []
    hidden = 0.0
    # Work list: (depth, start, weight, frame index, run of keys under this node).
    work: list[tuple[int, float, float, int, int, int]] = [(0, 0.0, prefix[-1], -1, 0, len(keys))]
    while work:
        depth, start, weight, fid, lo, hi = work.pop()
        boxes.append((depth, start, weight, fid))
        if hi - lo == 1:
            # One stack left: the rest is a chain of the same width.
            ids = keys[lo]
            boxes.extend((d + 1, start, weight, ids[d]) for d in range(depth, len(ids)))
            continue
        if len(keys[lo]) == depth:  # the stack ending here sorts first; it is this node's own
            lo += 1
        below = prefix[hi] - prefix[lo]  # weight of all children, drawn or not
        at = itemgetter(depth)
        visible = []
        dropped = False
        while lo < hi:
            child = keys[lo][depth]
            step = 1
            while lo + step < hi and keys[lo + step][depth] == child:
                step *= 2
            end = bisect_right(keys, child, lo + step // 2, min(lo + step, hi), key=at)
            w = prefix[end] - prefix[lo]
            if w >= min_weight:
                visible.append((w, child, lo, end))
            else:
                dropped = True
            lo = end
        visible.sort(key=lambda c: (-c[0], frames[c[1]].label))
        offset = start
        placed = []
        for w, child, clo, chi in visible:
            placed.append((depth + 1, offset, w, child, clo, chi))
            offset += w
        if dropped:
            hidden += below - (offset - start)
        work.extend(reversed(placed))
    return boxes, hidden


_ID_TYPE = next(t for t in "IL" if array(t).itemsize == 4)


def _sort_key(item: tuple[tuple[int, ...], float]) -> bytes:
    # Big-endian fixed-width bytes sort like the id tuples (a prefix first, then by id at each
    # depth) but compare with one memcmp instead of element by element.
    ids = array(_ID_TYPE, item[0])
    if sys.byteorder == "little":
        ids.byteswap()
    return ids.tobytes()


# -- rendering --------------------------------------------------------------------------------
def script() -> str:
    """The inline script (zoom, search, hover), read from ``flamegraph.js``."""
    return resources.files(__package__).joinpath("flamegraph.js").read_text(encoding="utf-8")


def render(
    model: StackModel,
    title: str | None = None,
    *,
    width: int = WIDTH,
    inverted: bool = False,
    min_width: float = MIN_WIDTH,
    xml_declaration: bool = True,
) -> str:
    """The model as an interactive SVG document.

    ``inverted`` draws an icicle (root at the top) instead of a flame (root at the bottom).
    ``min_width`` is the narrowest frame drawn, in pixels. ``xml_declaration=False`` gives a bare
    ``<svg>`` element to inline in HTML.
    """
    if width < 100:
        raise ValueError(f"flamegraph width {width} px is too small: use at least 100")
    title = title or model.name
    span = width - 2 * PAD
    weights = [w for w in model.stacks.values() if w > 0]
    total = sum(weights)
    boxes, hidden = layout(model, min_width * total / span) if total > 0 else ([], 0.0)
    max_depth = max((b[0] for b in boxes), default=0)
    frames_height = (max_depth + 1) * FRAME_HEIGHT if boxes else 60
    height = HEADER + frames_height + FOOTER

    out = [_document_start(title, width, height, xml_declaration)]
    if not boxes:
        out.append(_empty_body(width, model.unit))
        return "".join(out)
    out.append(_header(model.unit, total, len(weights), hidden, width, min_width, inverted))
    out.extend(_frame_elements(model, boxes, total, span, max_depth, inverted))
    out.append(_document_end(width, height))
    return "".join(out)


def _document_start(title: str, width: int, height: int, xml_declaration: bool) -> str:
    """The XML declaration, the ``<svg>`` element with its style, background and title."""
    declaration = '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
    return (declaration if xml_declaration else "") + (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="vmtop-flamegraph" version="1.1" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">\n'
        f"<style>{_CSS}</style>\n"
        f'<rect class="background" x="0" y="0" width="{width}" height="{height}"/>\n'
        f'<text class="title" x="{width / 2:.1f}" y="22">{escape(title)}</text>\n'
    )


def _empty_body(width: int, unit: str) -> str:
    """What an empty profile shows (a valid document that says "no samples"), and its end."""
    return (
        f'<text class="subtitle" x="{width / 2:.1f}" y="40">{escape(format_weight(0, unit))}'
        f"</text>\n"
        f'<text class="empty" x="{width / 2:.1f}" y="{HEADER + 30}">no samples</text>\n'
        "</svg>\n"
    )


def _header(
    unit: str,
    total: float,
    stacks: int,
    hidden: float,
    width: int,
    min_width: float,
    inverted: bool,
) -> str:
    """Subtitle, zoom and search controls, legend, pruning note; opens the frames group."""
    subtitle = f"total {format_weight(total, unit)} in {stacks:,} distinct stack{'s' if stacks != 1 else ''}"
    note = ""
    if hidden > 0:
        share = hidden / total * 100
        shown = f"{share:.1f}%" if share >= 0.1 else "< 0.1%"
        note = f"{shown} of the total is in frames too narrow to draw (< {min_width:g} px)"
    row = 46  # third header row: legend on the left, pruning note on the right
    span = width - 2 * PAD
    return (
        f'<text class="subtitle" x="{width / 2:.1f}" y="40">{escape(subtitle)}</text>\n'
        f'<text class="control reset hidden" x="{PAD}" y="22">Reset zoom</text>\n'
        f'<text class="control search" x="{width - PAD}" y="22">Search</text>\n'
        f'<g class="legend"><rect x="{PAD}" y="{row}" width="10" height="10" '
        f'fill="{USER_SWATCH}"/><text x="{PAD + 14}" y="{row + 9}">your code</text>'
        f'<rect x="{PAD + 94}" y="{row}" width="10" height="10" fill="{LIBRARY_SWATCH}"/>'
        f'<text x="{PAD + 108}" y="{row + 9}">library / stdlib</text>'
        f'<text class="note" x="{width - PAD}" y="{row + 9}">{escape(note)}</text></g>\n'
        f'<g class="frames" data-left="{PAD}" data-width="{span}" data-char-width="{CHAR_WIDTH}" '
        f'data-text-pad="{TEXT_PAD}" data-inverted="{int(inverted)}">\n'
    )


def _frame_elements(
    model: StackModel,
    boxes: list[Box],
    total: float,
    span: int,
    max_depth: int,
    inverted: bool,
) -> Iterator[str]:
    """One ``<g class="frame">`` per laid-out box: tooltip, rectangle, fitted label."""
    frames = model.frames
    unit = model.unit
    labels: dict[int, tuple[str, str, str]] = {}  # fid -> (escaped label, display, colour)
    scale = span / total
    top = HEADER
    base = HEADER + max_depth * FRAME_HEIGHT
    rect_height = FRAME_HEIGHT - 1
    text_dy = FRAME_HEIGHT - 4.5
    for depth, start, weight, fid in boxes:
        info = labels.get(fid)
        if info is None:
            if fid < 0:
                info = (ROOT_LABEL, ROOT_LABEL, ROOT_COLOUR)
            else:
                frame = frames[fid]
                label = frame.label
                info = (escape(label), display_label(label), frame_colour(frame))
            labels[fid] = info
        x0 = round(PAD + start * scale, 2)
        x1 = round(PAD + (start + weight) * scale, 2)
        y = top + depth * FRAME_HEIGHT if inverted else base - depth * FRAME_HEIGHT
        # format_weight gives digits, separators and unit names: nothing to escape.
        tip = f"{info[0]} — {format_weight(weight, unit)} ({weight / total * 100:.2f}%)"
        yield (
            f'<g class="frame"><title>{tip}</title><rect x="{x0:.2f}" y="{y}" '
            f'width="{x1 - x0:.2f}" height="{rect_height}" fill="{info[2]}"/>'
            f'<text x="{x0 + TEXT_PAD:.2f}" y="{y + text_dy}">'
            f"{escape(fit_text(info[1], x1 - x0))}</text></g>\n"
        )


def _document_end(width: int, height: int) -> str:
    """Closes the frames group; the status lines and the inline script."""
    return (
        "</g>\n"
        f'<text class="status" x="{PAD}" y="{height - 10}"> </text>\n'
        f'<text class="matched hidden" x="{width - PAD}" y="{height - 10}"> </text>\n'
        f"<script><![CDATA[\n{script()}\n]]></script>\n"
        "</svg>\n"
    )


_CSS = "".join(
    # Scoped to the flamegraph so an SVG inlined in HTML (or Jupyter) leaves the page alone.
    f".vmtop-flamegraph {rule}"
    for rule in (
        "text{font-family:ui-monospace,'DejaVu Sans Mono',Menlo,Consolas,monospace;"
        f"font-size:{FONT_SIZE}px;fill:#000}}",
        ".background{fill:#fdfbf7}",
        "text.title{font-size:17px;font-weight:bold;text-anchor:middle}",
        "text.subtitle{font-size:12px;fill:#555;text-anchor:middle}",
        "text.empty{font-size:14px;fill:#777;text-anchor:middle}",
        "text.control{font-size:12px;fill:#1a5fb4;cursor:pointer;text-decoration:underline}",
        "text.search,.vmtop-flamegraph text.matched{text-anchor:end}",
        "text.hidden{display:none}",
        ".legend text{font-size:11px;fill:#555}",
        ".legend text.note{text-anchor:end}",
        "g.frame{cursor:pointer}",
        "g.frame text{pointer-events:none}",
        "g.frame:hover rect{stroke:#222;stroke-width:0.6}",
        "g.frame.match rect{fill:rgb(225,60,225)}",
        "g.frame.dim rect{fill-opacity:0.45}",
        "g.frame.hide{display:none}",
    )
)
