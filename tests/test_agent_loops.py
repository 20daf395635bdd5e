"""Loop flavours: uvloop (steps not countable: '–' with the reason) and 3.12+ eager tasks."""

from __future__ import annotations

import sys
import time

import pytest

from tests.agent_helpers import Target
from vmtop.client import AgentClient

pytestmark = pytest.mark.internals


def test_uvloop_rows_say_steps_are_not_counted() -> None:
    pytest.importorskip("uvloop", reason="uvloop is an optional extra (pip install vmtop[uvloop])")
    with Target("agent_loops_target.py", "uvloop") as target:
        assert target.ready["loop"].startswith("uvloop")
        with AgentClient(target.pid) as client:
            time.sleep(0.3)
            snap = client.snapshot(kinds=("task",), filter="spinner")
    (row,) = snap.rows
    assert row.reductions is None and row.time is None  # "–", never a wrong 0
    assert row.notes and "uvloop" in row.notes[0]
    (loop,) = snap.node.loops
    assert not loop.steps_counted and "uvloop" in loop.note
    assert row.current is not None and row.current.function == "spin"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager task factories exist from 3.12")
def test_eager_task_first_step_is_counted() -> None:
    with Target("agent_loops_target.py", "eager") as target, AgentClient(target.pid) as client:
        client.snapshot(limit=1)  # the agent wraps the loop's factory on attach
        time.sleep(0.2)
        target.send("spawn")
        target.read_until("stepper_done")
        snap = client.snapshot(kinds=("task",), filter="stepper", accumulate=True)
    (row,) = snap.rows
    # 1 eager first step inside create_task + 3 resumptions after sleep(0).
    assert row.reductions_total == 4
