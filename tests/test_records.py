"""Records encode as ``dataclasses.asdict`` did, without its deep copies (vmtop/records.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import pytest

from tests.agent_helpers import Target
from vmtop.client import AgentClient
from vmtop.records import GroupRow, ProcessRow, Snapshot


def asdict_encoding(snap: Snapshot) -> dict[str, Any]:
    """What ``Snapshot.to_dict`` returned when it was built on ``asdict``."""

    def row(r: ProcessRow | GroupRow) -> dict[str, Any]:
        return {**asdict(r), "notes": list(r.notes)}

    d = asdict(snap)
    d["rows"] = [row(r) for r in snap.rows]
    d["groups"] = [row(g) for g in snap.groups]
    d["notes"] = list(snap.notes)
    return d


@pytest.fixture(scope="module")
def snapshots() -> Iterator[list[Snapshot]]:
    # A real target's snapshots: task, thread and queue rows, groups, loops, GC figures,
    # locations, memory estimates, per-interval figures (the second has an interval).
    with Target("mailbox_target.py") as target, AgentClient(target.pid) as client:
        first = client.snapshot(limit=300, sort="memory")
        target.send("take 3")
        target.read_until("taken")
        yield [first, client.snapshot(limit=300, accumulate=True)]


def test_snapshot_encoding_is_asdicts_in_content_and_order(snapshots: list[Snapshot]) -> None:
    for snap in snapshots:
        assert snap.rows and snap.node.loops and snap.node.gc
        assert {r.kind for r in snap.rows} >= {"task", "thread"}
        assert any(r.current is not None for r in snap.rows)
        new, old = snap.to_dict(), asdict_encoding(snap)
        assert new == old
        assert json.dumps(new) == json.dumps(old)  # key order included: `top --json` output
        assert Snapshot.from_dict(json.loads(json.dumps(new))) == snap


def test_encoding_copies_nothing_mutable(snapshots: list[Snapshot]) -> None:
    snap = snapshots[0]
    d = snap.to_dict()
    d["node"]["loops"][0]["name"] = "changed"
    d["rows"][0]["notes"].append("x")
    assert snap.node.loops[0].name != "changed" and "x" not in snap.rows[0].notes
