"""Folded stacks round trip, and the suffix registry (format_for / render / save)."""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from profilers import writers
from profilers.stacks import Frame, StackModel
from profilers.writers import folded


def stacks_of(model: StackModel) -> dict[tuple[Frame, ...], float]:
    return dict(model.items())


def round_trip(model: StackModel) -> StackModel:
    return StackModel.from_folded(folded.render(model), unit=model.unit)


def test_round_trip_keeps_stacks_and_weights() -> None:
    model = StackModel()
    main = Frame("main", "/srv/app/main.py", 10)
    model.add([main, Frame("handle", "/srv/app/web.py", 42)], 7)
    model.add([main, Frame("handle", "/srv/app/web.py", 42), Frame("query", "db.py", 3)], 5)
    model.add([main, Frame("idle")], 1)
    model.add([main, Frame("idle")], 2)  # same stack again: weights add up
    back = round_trip(model)
    assert stacks_of(back) == stacks_of(model)
    assert back.total == 15
    assert stacks_of(back)[(main, Frame("idle"))] == 3


def test_labels_with_spaces_parentheses_and_colons_survive() -> None:
    odd = [
        Frame("my func", "/path with spaces/mod.py", 12),
        Frame("f(x)", "m.py", 1),
        Frame("Class::method", "C:/win/path.py", 99),
        Frame("<lambda>", "<frozen importlib._bootstrap>", 1),
        Frame("no location"),
        Frame("dict.get", "builtins"),
        Frame("ünïcødé ☃", "/tmp/ü.py", 7),
    ]
    model = StackModel()
    for i in range(len(odd)):
        model.add(odd[: i + 1], i + 1)
    assert stacks_of(round_trip(model)) == stacks_of(model)


def test_semicolons_in_names_are_replaced_not_split() -> None:
    model = StackModel()
    model.add([Frame("a;b", "x;y.py", 3), Frame("leaf")], 4)
    text = folded.render(model)
    assert text == "a:b (x:y.py:3);leaf 4\n"
    back = round_trip(model)
    assert stacks_of(back) == {(Frame("a:b", "x:y.py", 3), Frame("leaf")): 4}


def test_fractional_weights_round_trip() -> None:
    model = StackModel(unit="seconds")
    model.add([Frame("a"), Frame("b")], 0.25)
    model.add([Frame("a")], 1.5)
    assert folded.render(model) == "a;b 0.25\na 1.5\n"
    assert stacks_of(round_trip(model)) == stacks_of(model)


def test_empty_model_renders_empty_text() -> None:
    assert folded.render(StackModel()) == ""


_NAME = st.text(string.ascii_letters + string.digits + "_<>.:()[] -", min_size=1, max_size=12)


def _clean(name: str) -> str:
    # Outside the format's reach: surrounding spaces are stripped, and a bare function name
    # ending in "(...)" reads back as a location.
    return name.strip().rstrip(")") or "x"


@given(
    st.lists(
        st.tuples(
            st.lists(
                st.tuples(_NAME, st.sampled_from(["", "a.py", "/d d/b.py"]), st.integers(0, 9)),
                min_size=1,
                max_size=6,
            ),
            st.integers(1, 1000),
        ),
        max_size=8,
    )
)
def test_round_trip_property(stacks: list[tuple[list[tuple[str, str, int]], int]]) -> None:
    model = StackModel()
    for frames, weight in stacks:
        model.add(
            [Frame(_clean(fn), file, line if file else 0) for fn, file, line in frames], weight
        )
    assert stacks_of(round_trip(model)) == stacks_of(model)


# -- the registry ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("out.svg", "svg"),
        ("dir.d/OUT.SVG", "svg"),
        ("run.speedscope.json", "speedscope"),
        ("run.json", "speedscope"),
        ("stacks.folded", "folded"),
        ("stacks.collapsed", "folded"),
        ("report.html", "html"),
    ],
)
def test_format_for_known_suffixes(path: str, fmt: str) -> None:
    assert writers.format_for(path) == fmt
    assert writers.format_for(Path(path)) == fmt


def test_every_suffix_is_described() -> None:
    for suffix in writers.FORMATS:
        assert writers.format_for("x" + suffix) in writers.FORMAT_NAMES


@pytest.mark.parametrize("path", ["out.xyz", "out.txt", "profile.pstats"])
def test_unknown_suffix_is_one_clear_line(path: str) -> None:
    suffix = Path(path).suffix
    with pytest.raises(ValueError) as err:
        writers.format_for(path)
    assert str(err.value) == (
        f"unknown output format '{suffix}': use .svg, .speedscope.json, .folded or .html"
    )


def test_missing_suffix_is_reported() -> None:
    with pytest.raises(ValueError, match="no output format suffix in 'out'"):
        writers.format_for("some.dir/out")


def test_render_dispatches_and_rejects_unknown_names() -> None:
    model = StackModel()
    model.add([Frame("a"), Frame("b")], 3)
    assert writers.render(model, "folded") == "a;b 3\n"
    assert json.loads(writers.render(model, "speedscope", title="t"))["name"] == "t"
    assert writers.render(model, "svg").startswith("<?xml")
    assert writers.render(model, "html").startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError, match="unknown flamegraph format 'png'"):
        writers.render(model, "png")


def test_save_writes_the_file_and_returns_the_format(tmp_path: Path) -> None:
    model = StackModel()
    model.add([Frame("a"), Frame("b")], 3)
    target = tmp_path / "out.folded"
    target.write_text("old content that is longer than the new one\n")
    assert writers.save(model, target) == "folded"
    assert target.read_text() == "a;b 3\n"
    assert writers.save(model, str(tmp_path / "out.speedscope.json"), title="x") == "speedscope"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.folded", "out.speedscope.json"]


def test_save_unknown_suffix_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        writers.save(StackModel(), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_save_to_unwritable_place_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        writers.save(StackModel(), tmp_path / "no such dir" / "out.svg")
    if os.geteuid() != 0:  # root ignores directory permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(PermissionError):
            writers.save(StackModel(), locked / "out.svg")
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["locked"])
