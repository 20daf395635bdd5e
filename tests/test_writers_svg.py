"""The interactive SVG flamegraph: valid XML, one frame per tree node, tooltips, escaping."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from profilers import writers
from profilers.stacks import Frame, StackModel
from profilers.tree import build_tree
from profilers.writers import svg

NS = "{http://www.w3.org/2000/svg}"


@dataclass
class Drawn:
    label: str
    tip: str
    x: float
    width: float
    y: float
    fill: str
    text: str


def parse(document: str) -> ET.Element:
    return ET.fromstring(document.encode("utf-8"))


def drawn_frames(document: str) -> list[Drawn]:
    root = parse(document)
    out = []
    for g in root.iter(f"{NS}g"):
        if g.get("class") != "frame":
            continue
        tip = g.findtext(f"{NS}title") or ""
        rect = g.find(f"{NS}rect")
        assert rect is not None
        out.append(
            Drawn(
                label=tip.rpartition(" — ")[0],
                tip=tip,
                x=float(rect.get("x", "nan")),
                width=float(rect.get("width", "nan")),
                y=float(rect.get("y", "nan")),
                fill=rect.get("fill", ""),
                text=g.findtext(f"{NS}text") or "",
            )
        )
    return out


def web_model() -> StackModel:
    model = StackModel(name="web")
    main = Frame("main", "/srv/app/main.py", 10)
    handle = Frame("handle", "/srv/app/web.py", 42)
    query = Frame("query", "/srv/app/db.py", 7)
    dumps = Frame("dumps", "/usr/lib/python3.11/json/__init__.py", 231)
    model.add([main, handle, query], 50)
    model.add([main, handle, dumps], 20)
    model.add([main, handle], 10)
    model.add([main, Frame("idle", "/srv/app/main.py", 30)], 15)
    model.add([Frame("gc")], 5)
    model.add([main, handle, query, handle, query], 3)  # recursion
    return model


def test_valid_xml_with_one_frame_per_tree_node() -> None:
    model = web_model()
    frames = drawn_frames(svg.render(model))
    tree = build_tree(model)
    expected = Counter(
        (depth, node.frame.label, svg.format_weight(node.total, "samples"))
        for depth, node in tree.walk()
    )
    drawn = Counter(
        (
            round((frames[0].y - f.y) / svg.FRAME_HEIGHT),
            f.label,
            f.tip.split(" — ")[1].split(" (")[0],
        )
        for f in frames
    )
    # frames[0] is the root: the flame grows upwards from it.
    assert frames[0].label == "all"
    assert drawn == expected
    assert len(frames) == tree.count() == 9


def test_tooltip_text_and_geometry() -> None:
    frames: dict[str, Drawn] = {}
    for f in drawn_frames(svg.render(web_model())):
        frames.setdefault(f.label, f)  # the outer one of recursive frames
    root = frames["all"]
    assert root.tip == "all — 103 samples (100.00%)"
    handle = frames["handle (/srv/app/web.py:42)"]
    assert handle.tip == "handle (/srv/app/web.py:42) — 83 samples (80.58%)"
    # Width is proportional to weight; the drawing spans width - 2 * PAD pixels.
    assert root.x == svg.PAD and root.width == pytest.approx(1200 - 2 * svg.PAD)
    assert handle.width == pytest.approx(root.width * 83 / 103, abs=0.01)
    # Children sit inside their parent, heaviest first from the parent's left edge.
    main = frames["main (/srv/app/main.py:10)"]
    assert main.x == root.x and handle.x == main.x
    idle = frames["idle (/srv/app/main.py:30)"]
    assert idle.x == pytest.approx(handle.x + handle.width, abs=0.011)
    assert idle.x + idle.width <= main.x + main.width + 1e-9
    # Labels show the file name only, and are cut with ".." to fit.
    assert handle.text == "handle (web.py:42)"
    assert frames["gc"].text in ("gc", "")


def test_labels_are_truncated_to_fit() -> None:
    assert svg.fit_text("abcdefghij", 1000) == "abcdefghij"
    room = int((60 - 2 * svg.TEXT_PAD) / svg.CHAR_WIDTH)
    assert svg.fit_text("abcdefghijklmnop", 60) == "abcdefghijklmnop"[: room - 2] + ".."
    assert svg.fit_text("abcdefghij", 10) == ""
    model = StackModel()
    model.add([Frame("a_rather_long_function_name", "/x/mod.py", 1)], 1)
    model.add([Frame("big")], 200)
    small = next(f for f in drawn_frames(svg.render(model)) if f.label.startswith("a_rather"))
    assert small.text == svg.fit_text("a_rather_long_function_name (mod.py:1)", small.width)
    assert len(small.text) * svg.CHAR_WIDTH <= small.width


def test_inverted_puts_the_root_on_top() -> None:
    flame = drawn_frames(svg.render(web_model()))
    icicle = drawn_frames(svg.render(web_model(), inverted=True))
    assert flame[0].y == max(f.y for f in flame)
    assert icicle[0].y == min(f.y for f in icicle)
    assert sorted((f.label, f.x, f.width) for f in flame) == sorted(
        (f.label, f.x, f.width) for f in icicle
    )


def test_every_label_is_escaped() -> None:
    nasty = "<script>alert('x')</script> & \"q\" ]]> \x00\x1b"
    model = StackModel(name="<title> & 'co'")
    model.add([Frame(nasty, "/tmp/<dir>/a&b.py", 3), Frame("x>y")], 10)
    document = svg.render(model)
    root = parse(document)  # raises if any label broke the XML
    assert root.findtext(f"{NS}text[@class='title']") == "<title> & 'co'"
    labels = {f.label for f in drawn_frames(document)}
    assert "<script>alert('x')</script> & \"q\" ]]> \ufffd\ufffd (/tmp/<dir>/a&b.py:3)" in labels
    assert "x>y" in labels
    assert "<script>alert" not in document
    # The only script is ours.
    assert [s.text and s.text.count("vmtop flamegraph") for s in root.iter(f"{NS}script")] == [1]


def test_self_contained() -> None:
    document = svg.render(web_model())
    assert re.findall(r"https?://[^\s\"'<>]*", document) == ["http://www.w3.org/2000/svg"]
    assert "xlink:href" not in document and "@import" not in document


def test_script_is_inline_cdata_with_the_controls_it_needs() -> None:
    document = svg.render(web_model())
    assert "<script><![CDATA[" in document
    script = svg.script()
    assert "]]>" not in script  # would end the CDATA section early
    root = parse(document)
    classes = {e.get("class") for e in root.iter()}
    assert {"control reset hidden", "control search", "status", "matched hidden"} <= classes


def test_empty_model_says_no_samples() -> None:
    document = svg.render(StackModel(name="nothing"))
    root = parse(document)
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "no samples" in texts
    assert drawn_frames(document) == []


def test_zero_and_negative_weights_are_not_drawn() -> None:
    model = StackModel()
    model.stacks[(model.frame_id(Frame("neg")),)] = -5
    assert "no samples" in svg.render(model)
    model.add([Frame("pos")], 2)
    assert [f.label for f in drawn_frames(svg.render(model))] == ["all", "pos"]


def test_deep_stack_of_1000_frames() -> None:
    model = StackModel()
    deep = [Frame(f"f{i}", "deep.py", i + 1) for i in range(1000)]
    model.add(deep, 3)
    model.add(deep[:500] + [Frame("side")], 1)
    frames = drawn_frames(svg.render(model))
    assert len(frames) == build_tree(model).count() == 1 + 1000 + 1
    root = parse(svg.render(model))
    assert float(root.get("height", "0")) >= 1001 * svg.FRAME_HEIGHT


def test_narrow_frames_are_pruned_with_their_subtrees() -> None:
    model = StackModel()
    model.add([Frame("big"), Frame("child")], 1_000_000)
    model.add([Frame("big"), Frame("speck"), Frame("under_speck")], 50)  # 0.06 px at 1200 px
    model.add([Frame("tiny_root")], 50)
    document = svg.render(model)
    labels = [f.label for f in drawn_frames(document)]
    assert labels == ["all", "big", "child"]
    assert "&lt; 0.1% of the total is in frames too narrow to draw (&lt; 0.1 px)" in document
    assert svg.layout(model, 51)[1] == 100
    # A wider drawing (or a lower threshold) shows them.
    labels = [f.label for f in drawn_frames(svg.render(model, min_width=0.01))]
    assert sorted(labels) == ["all", "big", "child", "speck", "tiny_root", "under_speck"]


def test_layout_nests_children_and_orders_heaviest_first() -> None:
    model = web_model()
    boxes, hidden = svg.layout(model)
    assert hidden == 0
    assert len(boxes) == build_tree(model).count()
    parents: list[tuple[int, float, float, int]] = []
    for box in boxes:  # depth-first order: the parent is the last box one level up
        depth, start, weight, _ = box
        del parents[depth:]
        if parents:
            _, pstart, pweight, _ = parents[-1]
            assert pstart <= start and start + weight <= pstart + pweight
        parents.append(box)
    top = [b for b in boxes if b[0] == 1]
    assert [model.frames[b[3]].function for b in top] == ["main", "gc"]


def test_units_in_tooltips() -> None:
    model = StackModel(unit="bytes", name="allocations")
    model.add([Frame("load"), Frame("read")], 3 * 1024 * 1024)
    model.add([Frame("load")], 512 * 1024)
    document = svg.render(model)
    tips = {f.label: f.tip for f in drawn_frames(document)}
    assert tips["all"] == "all — 3.5 MiB (100.00%)"
    assert tips["read"] == "read — 3.0 MiB (85.71%)"
    assert "total 3.5 MiB in 2 distinct stacks" in document


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (1, "samples", "1 sample"),
        (1234567, "samples", "1,234,567 samples"),
        (100, "bytes", "100 B"),
        (1536, "bytes", "1.5 KiB"),
        (5 * 1024**3, "bytes", "5.0 GiB"),
        (2.5, "seconds", "2.50 s"),
        (0.0123, "seconds", "12.3 ms"),
        (0.000045, "seconds", "45 µs"),
        (7, "calls", "7 calls"),
        (3, "count", "3"),
        (2.5, "count", "2.50"),
    ],
)
def test_format_weight(value: float, unit: str, text: str) -> None:
    assert svg.format_weight(value, unit) == text


def test_colours_are_stable_and_libraries_get_their_own_hue() -> None:
    user = Frame("handle", "/srv/app/web.py", 42)
    assert svg.frame_colour(user) == svg.frame_colour(Frame("handle", "/other.py", 1))
    assert svg.frame_colour(user) != svg.frame_colour(Frame("query", "/srv/app/web.py", 42))
    for lib in (
        "/usr/lib/python3.11/json/__init__.py",
        "/venv/lib/python3.12/site-packages/requests/api.py",
        "/usr/lib/python3/dist-packages/apt/cache.py",
        "<frozen importlib._bootstrap>",
    ):
        assert svg.is_library(Frame("f", lib))
    assert not svg.is_library(user) and not svg.is_library(Frame("f"))

    def hue(colour: str) -> str:
        r, g, b = map(int, re.findall(r"\d+", colour))
        return "warm" if r > b else "aqua"

    assert hue(svg.frame_colour(user)) == "warm"
    assert hue(svg.frame_colour(Frame("loads", "/usr/lib/python3.11/json/__init__.py"))) == "aqua"


def test_saved_through_the_registry(tmp_path: Path) -> None:
    path = tmp_path / "out.svg"
    assert writers.save(web_model(), path, title="saved run") == "svg"
    root = ET.parse(path).getroot()
    assert root.findtext(f"{NS}text[@class='title']") == "saved run"


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_script_parses() -> None:
    subprocess.run(
        ["node", "--check", str(Path(svg.__file__).with_name("flamegraph.js"))], check=True
    )


def _chromium() -> str | None:
    return (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )


@pytest.mark.skipif(_chromium() is None, reason="no headless chromium")
def test_script_zooms_and_searches_in_a_browser(tmp_path: Path) -> None:
    model = StackModel()
    a, b, c, d = Frame("alpha", "m.py", 1), Frame("beta", "m.py", 2), Frame("gamma"), Frame("delta")
    model.add([a, b, a, b], 5)  # nested matches of "alpha" must count once
    model.add([a, c], 3)
    model.add([d], 2)
    probe = """<script><![CDATA[
var svg = document.documentElement, api = svg.vmtopFlamegraph, out = [];
out.push(api.search("^alpha").toFixed(4));
out.push(svg.querySelector("text.matched").textContent);
out.push(api.nodes.filter(function (n) { return n.g.classList.contains("match"); }).length);
out.push(api.search("gamma|delta").toFixed(4));
api.search("");
var beta = api.nodes.filter(function (n) { return n.label.indexOf("beta") == 0; })[0];
api.zoom(beta);
out.push(beta.rect.getAttribute("width"));
out.push(api.nodes.filter(function (n) { return n.g.classList.contains("dim"); }).length);
out.push(api.nodes.filter(function (n) { return !n.g.classList.contains("hide"); }).length);
api.unzoom();
out.push(api.nodes.filter(function (n) { return n.g.classList.contains("hide"); }).length);
var t = document.createElementNS("http://www.w3.org/2000/svg", "text");
t.setAttribute("id", "RESULT"); t.textContent = out.join("|"); svg.appendChild(t);
]]></script>
</svg>"""
    page = tmp_path / "probe.svg"
    page.write_text(svg.render(model).replace("</svg>\n", probe), encoding="utf-8")
    chromium = _chromium()
    assert chromium is not None
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
    ).stdout
    match = re.search(r'<text id="RESULT">([^<]*)<', dom)
    assert match, dom[-2000:]
    span = f"{1200 - 2 * svg.PAD:.2f}"
    # alpha: 8 of 10 (not 13); gamma|delta: 5 of 10; zoomed beta: full width, all + alpha dim,
    # beta + its 2 descendants + 2 ancestors shown.
    assert match.group(1).split("|") == [
        "0.8000",
        "Matched: 80.0% (^alpha)",
        "2",
        "0.5000",
        span,
        "2",
        "5",
        "0",
    ]


def test_nothing_hidden_means_no_note_even_with_float_weights() -> None:
    model = StackModel(unit="seconds")
    for i in range(50):
        model.add([Frame("a"), Frame(f"b{i % 7}"), Frame(f"c{i}")], 0.1 + i / 3)
    boxes, hidden = svg.layout(model, 0.0)
    assert hidden == 0 and len(boxes) == build_tree(model).count()
    assert "too narrow" not in svg.render(model)


def test_width_option() -> None:
    wide = drawn_frames(svg.render(web_model(), width=2000))
    assert wide[0].width == pytest.approx(2000 - 2 * svg.PAD)
    with pytest.raises(ValueError, match="too small"):
        svg.render(web_model(), width=50)
