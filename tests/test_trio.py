"""Trio through the agent: task rows, steps counted around each task's coroutine (or by an
instrument), memory channels as mailboxes.

The target runs under ``vmtop run`` (the module fixture) or starts the agent itself from
inside ``trio.run`` (``--start``, under plain python). The counting proxy is also tested in
this process, on real Trio runs: a counted task ends exactly as an uncounted one."""

from __future__ import annotations

import inspect
import os
import sys
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

import pytest
import trio

from tests.agent_helpers import TARGETS, Target, vmtop_cmd
from vmtop.agent.step_hooks import c_hook_available
from vmtop.agent.trio_tasks import CoroCounter, StepInstrument, make_counter
from vmtop.client import AgentClient
from vmtop.records import ProcessRow, Snapshot

pytestmark = pytest.mark.internals  # reads trio's run from a thread's frames


class StartedTarget(Target):
    """The target under plain python (with ``--start`` it calls ``vmtop.agent.start()``
    inside its run; without, it has no agent until one is injected)."""

    def __init__(self, script: str, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(
            script,
            argv=[sys.executable, str(TARGETS / script), *args],
            env={**os.environ, "PYTHONPATH": str(TARGETS.parent.parent), **(env or {})},
        )


@pytest.fixture(scope="module")
def target():
    with Target("trio_target.py") as t:
        yield t


def by_name(snap: Snapshot) -> dict[str, ProcessRow]:
    return {r.name: r for r in snap.rows if r.runtime == "trio"}


def test_scripted_checkpoints_are_exact_steps(target: Target) -> None:
    steps = target.ready["steps"]
    with AgentClient(target.pid) as client:
        before = client.snapshot(filter="scripted", accumulate=True, kinds=("task",)).rows[0]
        target.send("wake")
        target.read_until("scripted_done")
        after = client.snapshot(filter="scripted", accumulate=True, kinds=("task",)).rows[0]
    assert before.runtime == "trio" and before.name == "scripted"
    assert before.reductions_total is not None and after.reductions_total is not None
    # The wake-up, then one step after each checkpoint.
    assert after.reductions_total - before.reductions_total == steps + 1


def test_channel_backlog_is_its_consumers_mailbox(target: Target) -> None:
    with AgentClient(target.pid) as client:
        snap = client.snapshot(sort="mailbox", limit=3, kinds=("task",))
        detail = client.detail(snap.rows[0].key)
    first = snap.rows[0]
    assert first.name == "backlog-consumer" and first.mailbox == target.ready["backlog"]
    assert first.current is not None and first.current.function == "backlog_consumer"
    # Between its 20 ms sleeps it is parked, or queued to run once the sleep ended.
    assert (first.state, first.waiting_on) in {("waiting", "sleep 0.02s"), ("ready", "")}
    assert first.parent == "__main__.main" and first.loop == "trio-MainThread"
    (box,) = detail["mailbox"]
    assert box["length"] == target.ready["backlog"] and box["maxsize"] is None  # inf
    assert detail["await_chain"][0]["function"] == "backlog_consumer"


def test_shared_channel_gets_a_row_and_idle_receiver_an_empty_mailbox(target: Target) -> None:
    with AgentClient(target.pid) as client:
        snap = client.snapshot(limit=100)
        (queue,) = [r for r in snap.rows if r.kind == "queue" and r.runtime == "trio"]
        detail = client.detail(queue.key)
    rows = by_name(snap)
    assert detail["consumers"] == ["worker-0", "worker-1"] and detail["length"] == 0
    assert queue.consumers == 2 and queue.mailbox == 0 and queue.putters == 0
    assert "worker-0" in queue.name and "worker-1" in queue.name
    assert rows["worker-0"].mailbox is None  # shared: not one worker's mailbox
    assert rows["idle-receiver"].mailbox == 0
    assert rows["idle-receiver"].waiting_on == "MemoryReceiveChannel.receive"
    (loop,) = [x for x in snap.node.loops if x.name == "trio-MainThread"]
    assert loop.tasks >= 7  # the program's 7 and trio's own system tasks
    assert "<init>" not in rows  # trio's system tasks are not rows


def test_vmtop_top_shows_trio_rows(target: Target) -> None:
    out = vmtop_cmd("top", str(target.pid), "--once", "-i", "0.2", "-n", "20")
    assert out.returncode == 0, out.stderr
    assert "trio-MainThread" in out.stdout
    for name in ("backlog-consumer", "idle-receiver", "scripted", "hot"):
        assert name in out.stdout


def test_blocking_call_shows_in_the_runs_lag(target: Target) -> None:
    with AgentClient(target.pid) as client:
        first = client.snapshot(limit=1)
        # The probe is a system task the attach spawns: block only once it has ticked.
        deadline = time.monotonic() + 10
        while _trio_loop(first).lag_p50 is None:
            assert time.monotonic() < deadline, "the lag probe never ticked"
            time.sleep(0.05)
            first = client.snapshot(limit=1)
        target.send("block 0.3")
        target.read_until("blocked")
        # The probe wakes at most 25 ms after the block ends: wait until it has noted it
        # (not merely any new maximum: a lag of a few ms before the block is one too).
        snap = client.snapshot(limit=1)
        deadline = time.monotonic() + 10
        while (_trio_loop(snap).lag_max_total or 0.0) < 0.25:
            assert time.monotonic() < deadline, "the lag probe noted nothing"
            time.sleep(0.05)
            snap = client.snapshot(limit=1)
    assert (_trio_loop(first).lag_max_total or 0.0) < 0.25  # the block's, not an older lag
    loop = _trio_loop(snap)
    assert loop.lag_max is not None and loop.lag_max >= 0.25


def _trio_loop(snap: Snapshot) -> Any:
    (loop,) = [x for x in snap.node.loops if x.name == "trio-MainThread"]
    return loop


def hooks(t: Target) -> dict[str, Any]:
    t.send("hooks")
    return t.read_until("hooks")


UNHOOKED = {
    "hooks": True,
    "instruments": 0,
    "step_hook": False,
    "wrapped": 0,
    "receive_hooked": False,
    "probes": 0,
}
PROGRAM_TASKS = 7  # main, scripted, backlog-consumer, worker-0, worker-1, idle-receiver, hot


@pytest.mark.parametrize("hooks_env", ["c", "python"])
def test_agent_started_inside_trio_and_hooks_removed_at_detach(hooks_env: str) -> None:
    """C hooks: the program's tasks' coroutines are wrapped and Trio calls no per-step hook
    (the one instrument has only task_spawned); Python hooks: the step instrument. Either
    way the steps are exact, and the detach leaves nothing behind."""
    assert c_hook_available(), "pip install -e . should have compiled the C hooks"
    with StartedTarget("trio_target.py", "--start", env={"VMTOP_HOOKS": hooks_env}) as t:
        steps = t.ready["steps"]
        assert hooks(t) == UNHOOKED
        with AgentClient(t.pid) as client:
            snap = client.snapshot(sort="mailbox", limit=3, kinds=("task",))
            attached = hooks(t)
            before = client.snapshot(filter="scripted", accumulate=True, kinds=("task",)).rows[0]
            t.send("wake")
            t.read_until("scripted_done")
            after = client.snapshot(filter="scripted", accumulate=True, kinds=("task",)).rows[0]
        assert snap.rows[0].name == "backlog-consumer" and snap.rows[0].mailbox == 500
        assert attached["instruments"] == 1
        if hooks_env == "c":
            assert not attached["step_hook"] and attached["wrapped"] == PROGRAM_TASKS
            assert "counted around its coroutine" in snap.rows[0].notes[0]
        else:
            assert attached["step_hook"] and attached["wrapped"] == 0
            assert "Trio instrument" in snap.rows[0].notes[0]
        assert attached["receive_hooked"] and attached["probes"] == 1
        assert before.reductions_total is not None and after.reductions_total is not None
        assert after.reductions_total - before.reductions_total == steps + 1
        # The agent sees the client leave on its own thread: wait until it has.
        deadline = time.monotonic() + 10
        gone = hooks(t)
        while gone != UNHOOKED and time.monotonic() < deadline:
            time.sleep(0.05)
            gone = hooks(t)
        assert gone == UNHOOKED
        # The tasks run on with their own coroutines.
        t.send("wake")
        t.read_until("scripted_done")


def test_agent_injected_into_a_running_trio_program() -> None:
    with StartedTarget("trio_target.py") as t:
        out = vmtop_cmd("top", str(t.pid), "--once", "-i", "0.5", "--inject", "-y", "-n", "20")
    assert out.returncode == 0, out.stderr
    assert "trio-MainThread" in out.stdout
    for name in ("backlog-consumer", "idle-receiver", "scripted", "hot"):
        assert name in out.stdout


# -- the counting proxy in this process, on real Trio runs --------------------------------------
@pytest.fixture(params=["proxy", "instrument"])
def counter(request: pytest.FixtureRequest) -> Any:
    assert c_hook_available(), "pip install -e . should have compiled the C hooks"
    if request.param == "instrument":
        return StepInstrument()
    made = make_counter()
    assert isinstance(made, CoroCounter)
    return made


def on_run_thread(fn: Callable[[], Any]) -> Any:
    """An awaitable that runs ``fn`` from a ``run_sync_soon`` callback (as the agent does:
    inside Trio's own system task, with every program task suspended)."""

    async def go() -> Any:
        done = trio.Event()
        out: list[Any] = []

        def run() -> None:
            out.append(fn())
            done.set()

        trio.lowlevel.current_trio_token().run_sync_soon(run)
        await done.wait()
        return out[0]

    return go()


def test_counter_installed_mid_run_counts_every_step_and_uninstall_restores(counter: Any) -> None:
    """Spinning tasks, most of them queued to run at the install (their next step already
    bound to their coroutine's ``send``): every step after the install is counted, exactly;
    after the uninstall each task has its own coroutine back, and nothing counts."""
    n_tasks = 8
    counts = dict.fromkeys(range(n_tasks), 0)
    stop = [False]

    async def spin(i: int) -> str:
        while True:
            counts[i] += 1
            if stop[0]:
                return f"done {i}"
            await trio.lowlevel.checkpoint()

    async def main() -> dict[str, Any]:
        runner = trio._core._run.GLOBAL_RUN_CONTEXT.runner
        out: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            for i in range(n_tasks):
                nursery.start_soon(spin, i, name=f"spin-{i}")
            await trio.sleep(0.01)
            tasks = {t.name: t for t in nursery.child_tasks}
            originals = {name: t.coro for name, t in tasks.items()}

            def install() -> dict[int, int]:
                counter.install(runner)
                return dict(counts)

            at_install = await on_run_thread(install)
            for _ in range(50):
                await trio.lowlevel.checkpoint()
            out["wrapped"] = sorted(
                name for name, t in tasks.items() if t.coro is not originals[name]
            )
            at_read, stats = await on_run_thread(
                lambda: (
                    dict(counts),
                    {i: counter.get(tasks[f"spin-{i}"]) for i in range(n_tasks)},
                )
            )
            out["counted"] = {i: stats[i][0] for i in range(n_tasks)}
            out["expected"] = {i: at_read[i] - at_install[i] for i in range(n_tasks)}
            await on_run_thread(lambda: counter.uninstall(runner))
            out["restored"] = all(t.coro is originals[name] for name, t in tasks.items())
            out["native"] = all(type(t.coro) is types.CoroutineType for t in runner.tasks)
            out["after"] = {i: counter.get(tasks[f"spin-{i}"]) for i in range(n_tasks)}
            for _ in range(20):
                await trio.lowlevel.checkpoint()
            stop[0] = True
        out["instruments"] = len(runner.instruments.get("_all", {}))
        return out

    out = trio.run(main)
    assert out["counted"] == out["expected"] and min(out["expected"].values()) > 0
    assert out["restored"] and out["native"] and out["instruments"] == 0
    if isinstance(counter, CoroCounter):
        assert out["wrapped"] == [f"spin-{i}" for i in range(n_tasks)]
        assert out["after"] == dict.fromkeys(range(n_tasks))  # forgotten at the uninstall
    else:
        assert out["wrapped"] == []


class Boom(Exception):
    pass


def raise_boom() -> None:
    raise Boom("boom")


async def failing() -> None:
    await trio.lowlevel.checkpoint()
    raise_boom()


async def looks(record: dict[str, Any]) -> tuple[int, int]:
    """What a task sees of itself, then a tuple returned (StopIteration((1, 2)))."""
    task = trio.lowlevel.current_task()
    frame = sys._getframe()
    await trio.lowlevel.checkpoint()
    record["cr_frame"] = task.coro.cr_frame is frame
    record["cr_code"] = task.coro.cr_code is looks.__code__
    record["qualname"] = task.coro.__qualname__
    record["state"] = inspect.getcoroutinestate(task.coro)
    record["ki_protected"] = trio.lowlevel.currently_ki_protected()
    record["await_frames"] = [f.f_code.co_name for f, _ in task.iter_await_frames()]
    with trio.move_on_after(0.001) as scope:
        await trio.sleep(10)
    record["cancelled"] = scope.cancelled_caught
    return (1, 2)


def scenario() -> dict[str, Any]:
    """Tasks that look at themselves, return a tuple, are cancelled, and fail."""
    record: dict[str, Any] = {}

    async def main() -> Any:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(looks, record, name="looks")
        record["main_result"] = await looks({})
        parked: list[Any] = []

        async def sleeper() -> None:
            parked.append(trio.lowlevel.current_task())
            await trio.sleep(10)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sleeper, name="sleeper")
            await trio.sleep(0.001)
            nursery.cancel_scope.cancel()
        record["sleeper_state"] = inspect.getcoroutinestate(parked[0].coro)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(failing, name="failing")
        return "unreachable"

    return {"record": record, "main": main}


def run_scenario(instruments: tuple[Any, ...]) -> tuple[dict[str, Any], str, str]:
    got = scenario()
    try:
        trio.run(got["main"], instruments=instruments)
    except BaseException as exc:  # Boom, or a group holding it (strict exception groups)
        text = "".join(traceback.format_exception(exc))
        return got["record"], type(exc).__name__, text
    raise AssertionError("the failing task did not fail")


def test_counted_tasks_end_exactly_as_uncounted_ones() -> None:
    """Return values (a tuple), cancellation, an exception and its traceback, and what a
    task sees of its own coroutine: the same with every task's coroutine wrapped from the
    start (the ``task_spawned`` hook) as without."""
    counter = make_counter()
    assert isinstance(counter, CoroCounter)
    plain = run_scenario(())
    counted = run_scenario((counter.hook,))
    assert counted == plain
    record, _, text = plain
    assert record["main_result"] == (1, 2) and record["cancelled"]
    assert record["cr_frame"] and record["cr_code"] and record["qualname"] == "looks"
    assert record["state"] == inspect.CORO_RUNNING and not record["ki_protected"]
    assert record["await_frames"] == ["looks"]
    assert record["sleeper_state"] == inspect.CORO_CLOSED
    assert "raise_boom" in text and "Boom: boom" in text
    assert counter.registry.finished == 4  # each program task folded at the step that ended it


def test_proxy_close_and_throw_reach_the_coroutine() -> None:
    """``close()`` (GeneratorExit) and ``throw()`` go to the wrapped coroutine; only
    coroutine objects are wrapped."""
    from vmtop.agent._hooks import CountingCoro, Registry

    class Owner:  # stands for the task: the registry holds it weakly
        pass

    log: list[str] = []

    async def body() -> str:
        try:
            await trio.lowlevel.checkpoint()
        except GeneratorExit:
            log.append("GeneratorExit")
            raise
        except Boom:
            log.append("Boom")
            return "caught"
        return "ran"

    registry = Registry(trio.Cancelled)
    owner = Owner()
    inner = body()
    proxy = CountingCoro(registry, inner, owner, True)
    proxy.send(None)
    proxy.close()
    assert log == ["GeneratorExit"] and inner.cr_frame is None
    assert registry.stat(owner).steps == 1

    second = Owner()
    proxy = CountingCoro(registry, body(), second)
    proxy.send(None)
    with pytest.raises(StopIteration) as stop:
        proxy.throw(Boom("in"))
    assert stop.value.value == "caught" and log[-1] == "Boom"
    assert registry.stat(second) is None and registry.finished == 1  # folded at its end

    with pytest.raises(TypeError, match="coroutine object"):
        CountingCoro(registry, iter(()), Owner())
