"""The HTML page: inline SVG flamegraph plus a sortable table of top functions."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

from profilers import writers
from profilers.stacks import Frame, StackModel
from profilers.writers import html, svg


class Page(HTMLParser):
    """Collects the table cells, the script count and the inline <svg> text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.headers: list[str] = []
        self.tags: list[str] = []
        self._cell: list[str] | None = None
        self._in_th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
            self._in_th = tag == "th"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell)
            (self.headers if self._in_th else self.rows[-1]).append(text)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    parser.rows = [r for r in parser.rows if r]
    return parser


def model() -> StackModel:
    m = StackModel(name="web")
    main = Frame("main", "/srv/app/main.py", 10)
    handle = Frame("handle", "/srv/app/web.py", 42)
    query = Frame("query", "/srv/app/db.py", 7)
    m.add([main, handle, query], 60)
    m.add([main, handle], 25)
    m.add([main, query], 15)
    return m


def test_page_has_the_flamegraph_and_the_top_functions() -> None:
    page = html.render(model(), "my run")
    assert page.startswith("<!DOCTYPE html>")
    parsed = parse(page)
    assert parsed.headers == ["Function", "Location", "Self", "Self %", "Total", "Total %"]
    assert parsed.rows == [
        ["query", "/srv/app/db.py:7", "75 samples", "75.00%", "75 samples", "75.00%"],
        ["handle", "/srv/app/web.py:42", "25 samples", "25.00%", "85 samples", "85.00%"],
        ["main", "/srv/app/main.py:10", "0 samples", "0.00%", "100 samples", "100.00%"],
    ]
    assert parsed.tags.count("svg") == 1 and parsed.tags.count("script") == 2
    # The inline SVG is the same flamegraph the .svg writer makes, minus the XML declaration.
    start, end = page.index("<svg "), page.index("</svg>") + len("</svg>")
    inline = page[start:end]
    assert inline + "\n" == svg.render(model(), "my run", xml_declaration=False)
    ET.fromstring(inline)


def test_table_values_come_from_the_model() -> None:
    m = model()
    rows = html.top_functions(m)
    own, total = m.self_weights(), m.total_weights()
    assert [(f, s, t) for f, s, t in rows] == [(f, own.get(f, 0.0), total[f]) for f, _, _ in rows]
    assert {f for f, _, _ in rows} == set(total)


def test_table_keeps_the_top_by_self_and_by_total() -> None:
    m = StackModel()
    chain = [Frame(f"outer{i}") for i in range(5)]
    for i in range(10):
        m.add([*chain, Frame(f"leaf{i}")], 10 + i)
    rows = html.top_functions(m, limit=2)
    names = [f.function for f, _, _ in rows]
    assert names[:2] == ["leaf9", "leaf8"]  # heaviest self first
    assert set(names[2:]) == {"outer0", "outer1"}  # top 2 by total, tie broken by label
    assert len(rows) == 4


def test_labels_are_escaped() -> None:
    m = StackModel(name="<b>x</b>")
    m.add([Frame("<img src=x onerror=alert(1)>", "/tmp/a&b.py", 1), Frame("'q'\"")], 3)
    page = html.render(m)
    assert "<img" not in page and "<b>" not in page
    parsed = parse(page)
    assert parsed.rows[1][:2] == ["<img src=x onerror=alert(1)>", "/tmp/a&b.py:1"]
    assert parsed.rows[0][0] == "'q'\""


def test_self_contained() -> None:
    page = html.render(model())
    assert re.findall(r"https?://[^\s\"'<>]*", page) == ["http://www.w3.org/2000/svg"]
    assert "<link" not in page and " src=" not in page


def test_empty_model() -> None:
    page = html.render(StackModel(name="idle"))
    assert "no samples" in page
    assert parse(page).rows == []


def test_units_in_table() -> None:
    m = StackModel(unit="bytes")
    m.add([Frame("load"), Frame("read")], 2 * 1024 * 1024)
    rows = parse(html.render(m)).rows
    assert rows[0][:3] == ["read", "", "2.0 MiB"]


def test_saved_through_the_registry(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    assert writers.save(model(), path) == "html"
    assert "<h1>web</h1>" in path.read_text(encoding="utf-8")
