"""Watching changes nothing in the program's objects (a real target under ``vmtop run``).

On CPython 3.11 and 3.12, asking an instance for its ``__dict__`` (``vars``, ``hasattr(obj,
"__dict__")``) makes one for good and every specialised attribute access of the program on
that object misses from then on: one memory-sorted snapshot once cost a web service 10 % more
instructions per request for the rest of its life. And ``getattr`` on the program's objects
can run their ``__getattr__``. Snapshots of every sort, which estimate memory and look for
mailboxes in what tasks hold, must do neither.
"""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from tests.agent_helpers import Target
from vmtop.agent.objects import attribute, attribute_values
from vmtop.client import AgentClient

pytestmark = pytest.mark.internals


def test_snapshots_make_no_instance_dict_and_call_no_getattr() -> None:
    with Target("objects_target.py") as target:
        assert target.ready["materialized_at_start"] == []
        with AgentClient(target.pid) as client:
            shown = set()
            for sort in ("memory", "mailbox", "reductions", "time"):
                snap = client.snapshot(sort=sort, limit=50, memory=True)
                shown |= {r.name for r in snap.rows if r.memory is not None}
            time.sleep(0.2)
            snap = client.snapshot(sort="memory", limit=50, memory=True)
            shown |= {r.name for r in snap.rows if r.memory is not None}
        # the estimates looked into the handlers' tasks (else this test would prove nothing),
        # and the mailbox search read self.inbox (the handlers take from it)
        assert {"handler-0", "handler-1", "handler-2"} <= shown
        assert {r.name: r.mailbox for r in snap.rows if r.name.startswith("handler")} == {
            f"handler-{i}": 5 for i in range(3)
        }
        target.send("check")
        seen = target.read_until("materialized")
    assert seen["materialized"] == []
    assert seen["getattr"] == []


class Holder:
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[int] = asyncio.Queue()
        self.count = 3

    @property
    def computed(self) -> int:
        raise AssertionError("the property ran")

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"__getattr__ ran for {name}")


class Slotted:
    __slots__ = ("item",)

    def __init__(self) -> None:
        self.item = "x"


def has_dict(obj: object) -> bool:
    return any(type(r) is dict for r in gc.get_referents(obj))


def test_attribute_reads_plain_attributes_and_slots_and_runs_nothing() -> None:
    h = Holder()
    assert attribute(h, "inbox") is object.__getattribute__(h, "inbox")
    assert attribute(h, "count") == 3
    assert attribute(h, "computed") is None  # a property: not run
    assert attribute(h, "missing") is None  # not found: __getattr__ not asked
    assert attribute(Slotted(), "item") == "x"
    assert not has_dict(h)


def test_attribute_values_are_the_attributes_without_making_a_dict() -> None:
    h = Holder()
    values = attribute_values(h)
    assert any(v is object.__getattribute__(h, "inbox") for v in values)
    assert 3 in values
    assert not has_dict(h)
