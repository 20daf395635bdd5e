"""Loop flavours: uvloop (steps not countable: '–' with the reason) and 3.12+ eager tasks."""

from __future__ import annotations

import sys
import time

import pytest

from tests.agent_helpers import Target
from vmtop.client import AgentClient

pytestmark = pytest.mark.internals


def test_uvloop_counts_tasks_created_after_the_attach_exactly() -> None:
    pytest.importorskip("uvloop", reason="uvloop is an optional extra (pip install vmtop[uvloop])")
    with Target("agent_loops_target.py", "uvloop") as target:
        assert target.ready["loop"].startswith("uvloop")
        with AgentClient(target.pid) as client:
            client.snapshot(limit=1)  # the agent puts its task factory on the loop at attach
            time.sleep(0.2)
            target.send("spawn")
            target.read_until("stepper_done")
            snap = client.snapshot(kinds=("task",), accumulate=True)
    rows = {r.name: r for r in snap.rows}
    # 1 first step + 3 resumptions after sleep(0), each counted by the counting coroutine.
    assert rows["stepper"].reductions_total == 4
    # The spinner predates the attach: "–" with the reason, never a wrong 0.
    spinner = rows["spinner"]
    assert spinner.reductions is None and spinner.time is None
    assert spinner.notes and "before the attach" in spinner.notes[0]
    assert spinner.current is not None and spinner.current.function == "spin"
    (loop,) = snap.node.loops
    assert loop.steps_counted and "uvloop" in loop.note


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
