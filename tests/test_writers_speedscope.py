"""speedscope JSON: valid against the published schema, totals and frames as in the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from profilers import writers
from profilers.stacks import Frame, StackModel
from profilers.writers import speedscope

SCHEMA = json.loads(
    (Path(__file__).parent / "data" / "speedscope-file-format-schema.json").read_text()
)


def validate(doc: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator(SCHEMA).validate(doc)


def sample_model(unit: str = "samples") -> StackModel:
    model = StackModel(unit=unit, name="demo")
    main = Frame("main", "/srv/app/main.py", 10)
    handle = Frame("handle", "/srv/app/web.py", 42)
    model.add([main, handle, Frame("query", "/srv/app/db.py", 7)], 30)
    model.add([main, handle], 12)
    model.add([main, Frame("json.dumps")], 8)
    return model


def test_valid_against_the_schema_with_totals_and_frames() -> None:
    model = sample_model()
    doc = json.loads(speedscope.render(model, "my run"))
    validate(doc)
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert doc["exporter"].startswith("vmtop ")
    assert doc["name"] == "my run"
    (profile,) = doc["profiles"]
    assert profile["type"] == "sampled"
    assert profile["unit"] == "none"
    assert profile["startValue"] == 0
    assert profile["endValue"] == 50 == sum(profile["weights"])
    frames = doc["shared"]["frames"]
    assert frames[0] == {"name": "main", "file": "/srv/app/main.py", "line": 10}
    assert frames[3] == {"name": "json.dumps"}  # unknown location: no file, no line
    stacks = {
        tuple(frames[i]["name"] for i in sample): weight
        for sample, weight in zip(profile["samples"], profile["weights"], strict=True)
    }
    assert stacks == {
        ("main", "handle", "query"): 30,
        ("main", "handle"): 12,
        ("main", "json.dumps"): 8,
    }


@pytest.mark.parametrize(
    ("unit", "expected"),
    [("samples", "none"), ("seconds", "seconds"), ("bytes", "bytes"), ("calls", "none")],
)
def test_unit_mapping(unit: str, expected: str) -> None:
    doc = json.loads(speedscope.render(sample_model(unit)))
    validate(doc)
    assert doc["profiles"][0]["unit"] == expected


def test_fractional_weights_and_default_name() -> None:
    model = StackModel(unit="seconds", name="timed")
    model.add([Frame("a"), Frame("b")], 0.125)
    model.add([Frame("a")], 0.5)
    doc = json.loads(speedscope.render(model))
    validate(doc)
    assert doc["name"] == doc["profiles"][0]["name"] == "timed"
    assert doc["profiles"][0]["weights"] == [0.125, 0.5]
    assert doc["profiles"][0]["endValue"] == 0.625


def test_empty_model_is_a_valid_file() -> None:
    doc = json.loads(speedscope.render(StackModel()))
    validate(doc)
    assert doc["profiles"][0]["samples"] == []
    assert doc["profiles"][0]["endValue"] == 0


def test_deep_stack_and_odd_names() -> None:
    model = StackModel()
    deep = [Frame(f"f{i}", "deep.py", i + 1) for i in range(1000)]
    model.add(deep, 3)
    model.add([Frame("<>&\"'\\ \u2603 \ud800", "x.py")], 1)  # a lone surrogate, too
    text = speedscope.render(model)
    text.encode("utf-8")  # writable as UTF-8
    doc = json.loads(text)
    validate(doc)
    assert len(doc["profiles"][0]["samples"][0]) == 1000
    assert doc["profiles"][0]["samples"][0][:3] == [0, 1, 2]  # root first
    assert doc["shared"]["frames"][1000]["name"] == "<>&\"'\\ \u2603 \ud800"


def test_schema_rejects_a_broken_file() -> None:
    # The validation above can fail: a profile without weights is refused.
    doc = json.loads(speedscope.render(sample_model()))
    del doc["profiles"][0]["weights"]
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


def test_saved_through_the_registry(tmp_path: Path) -> None:
    path = tmp_path / "run.speedscope.json"
    assert writers.save(sample_model(), path, title="saved") == "speedscope"
    doc = json.loads(path.read_text(encoding="utf-8"))
    validate(doc)
    assert doc["name"] == "saved"
