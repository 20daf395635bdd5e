"""Watching changes nothing in the program's objects (a real target under ``vmtop run``).

On CPython 3.11 and 3.12, asking an instance for its ``__dict__`` (``vars``, ``hasattr(obj,
"__dict__")``) makes one for good and every specialised attribute access of the program on
that object misses from then on: one memory-sorted snapshot once cost a web service 10 % more
instructions per request for the rest of its life. And ``getattr`` on the program's objects
can run their ``__getattr__``. Snapshots of every sort, which estimate memory and look for
mailboxes in what tasks hold, must do neither.
"""

from __future__ import annotations

import time

import pytest

from tests.agent_helpers import Target
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
        # the estimates looked into the handlers' tasks (else this test would prove nothing)
        assert {"handler-0", "handler-1", "handler-2"} <= shown
        target.send("check")
        seen = target.read_until("materialized")
    assert seen["materialized"] == []
    assert seen["getattr"] == []
