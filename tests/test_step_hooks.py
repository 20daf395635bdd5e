"""The step hooks (C and Python) on a real event loop: exact counts, the stdlib's behaviour kept.

Every test runs once per hook implementation; the C one must be built here (CI installs the
package, which compiles it), so its absence fails rather than skips.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import gc
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from vmtop.agent.step_hooks import StepCounter, c_hook_available

pytestmark = pytest.mark.internals

KINDS = ["c", "python"]


@pytest.fixture(params=KINDS)
def counter(request: pytest.FixtureRequest) -> Iterator[StepCounter]:
    original = asyncio.events.Handle._run
    steps = StepCounter(hook_kind=request.param)
    steps.install()
    try:
        assert steps.implementation == request.param
        yield steps
    finally:
        steps.uninstall()
    assert asyncio.events.Handle._run is original


def test_the_c_hook_is_built() -> None:
    assert c_hook_available(), "pip install -e . should have compiled vmtop/agent/_hooks.c"


def _kernel_clocksource() -> str:
    path = "/sys/devices/system/clocksource/clocksource0/current_clocksource"
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _paired_reading(now: Any) -> tuple[float, float]:
    """(vmtop's clock, time.monotonic) read as close together as we can: of five tries, the
    one whose monotonic readings around it were nearest (a preemption in between widens it)."""
    import time

    best: tuple[float, float, float] | None = None
    for _ in range(5):
        before = time.monotonic()
        ours = now()
        after = time.monotonic()
        if best is None or after - before < best[0]:
            best = (after - before, ours, (before + after) / 2)
    assert best is not None
    return best[1], best[2]


def test_the_step_clock_runs_at_the_rate_of_clock_monotonic() -> None:
    """The C hooks time steps by the CPU's time-stamp counter where the kernel's clock source
    is the TSC (x86-64), else by clock_gettime: either way at CLOCK_MONOTONIC's rate, before
    and after a registry's take() refines it, and never backwards."""
    import platform
    import time

    from vmtop.agent import _hooks

    tsc = _kernel_clocksource() == "tsc" and platform.machine() == "x86_64"
    assert _hooks.clock_source() == ("tsc" if tsc else "clock_gettime")
    registry = _hooks.Registry(asyncio.CancelledError)
    for _ in range(3):
        ours0, mono0 = _paired_reading(_hooks.now)
        time.sleep(0.3)
        ours1, mono1 = _paired_reading(_hooks.now)
        assert (ours1 - ours0) / (mono1 - mono0) == pytest.approx(1.0, rel=0.01)
        assert abs(ours1 - mono1) < 0.01  # the same origin too, give or take a refinement
        registry.take()  # refines the rate, keeping the clock continuous
    readings = []
    for _ in range(2000):
        readings.append(_hooks.now())
        if len(readings) % 100 == 0:
            registry.take()
    assert readings == sorted(readings)


async def resumes(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_a_task_counts_one_step_per_resumption(counter: StepCounter) -> None:
    async def main() -> Any:
        assert counter.install_factory(asyncio.get_running_loop(), wrap=False)
        task = asyncio.create_task(resumes(7))
        stat = counter.stat(task)  # made by the factory, with the creation time
        assert stat is not None and stat.task is task and stat.steps == 0
        await task
        return stat

    stat = asyncio.run(main())
    assert stat.steps == 8  # the first step, then one per sleep(0)
    assert 0 < stat.secs < 1
    assert stat.finished and stat.task is None  # folded into its group at its last step
    group = stat.group
    assert (group.started, group.finished, group.live, group.steps) == (1, 1, 0, 8)
    assert sum(group.hist) == 1  # one lifetime recorded


def test_time_is_the_wall_time_inside_the_steps(counter: StepCounter) -> None:
    import time

    async def busy() -> None:
        for _ in range(3):
            end = time.perf_counter() + 0.02
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0.01)  # waiting: not inside a step

    async def main() -> Any:
        assert counter.install_factory(asyncio.get_running_loop(), wrap=False)
        task = asyncio.create_task(busy())
        stat = counter.stat(task)
        await task
        return stat

    t0 = time.perf_counter()
    stat = asyncio.run(main())
    wall = time.perf_counter() - t0
    assert stat.steps == 4
    # At least the three 20 ms spins; never the three 10 ms sleeps between them.
    assert 0.06 <= stat.secs <= wall - 0.03
    assert stat.group.secs == stat.secs


async def waits_on(fut: asyncio.Future[None]) -> None:
    await fut


def test_no_task_is_kept_alive_finished_or_dropped(counter: StepCounter) -> None:
    """Nobody drains here (a client that never asks): finished tasks and a pending task the
    program let go of are freed all the same, and folded into their groups."""

    async def main() -> tuple[list[weakref.ref[Any]], Any, Any]:
        loop = asyncio.get_running_loop()
        assert counter.install_factory(loop, wrap=False)
        tasks = [asyncio.create_task(resumes(3)) for _ in range(500)]
        done_group = counter.stat(tasks[0]).group
        await asyncio.gather(*tasks)
        refs = [weakref.ref(t) for t in tasks]
        # Pending forever on a future that only it references: a cycle task <-> future.
        lost = asyncio.create_task(waits_on(loop.create_future()))
        lost_group = counter.stat(lost).group
        await asyncio.sleep(0)
        refs.append(weakref.ref(lost))
        del tasks, lost
        gc.collect()
        return refs, done_group, lost_group

    refs, done_group, lost_group = asyncio.run(main())
    assert [r() for r in refs] == [None] * 501
    assert (done_group.started, done_group.finished, done_group.live) == (500, 500, 0)
    assert (lost_group.started, lost_group.abandoned, lost_group.live) == (1, 1, 0)
    assert counter.registry.abandoned == 1


def test_other_callbacks_are_counted_apart(counter: StepCounter) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        for _ in range(5):
            loop.call_soon(lambda: None)
        loop.call_soon(done.set_result, None)
        await done
        counter.drain()

    asyncio.run(main())
    assert counter.other[0] >= 6


def test_a_raising_callback_reaches_the_exception_handler_as_without_hook(
    counter: StepCounter,
) -> None:
    def run_once() -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def boom(x: int) -> None:
            raise ValueError(f"boom {x}")

        async def main() -> None:
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda _loop, ctx: seen.update(ctx))
            loop.call_soon(boom, 3)
            await asyncio.sleep(0.01)

        asyncio.run(main())
        return seen

    hooked = run_once()
    counter.uninstall()
    plain = run_once()
    counter.install()
    assert set(hooked) == set(plain) == {"message", "exception", "handle"}
    assert hooked["message"] == plain["message"]
    assert "boom" in hooked["message"]
    assert type(hooked["exception"]) is ValueError and str(hooked["exception"]) == "boom 3"
    assert hooked["exception"].__traceback__ is not None


def test_system_exit_from_a_callback_propagates(counter: StepCounter) -> None:
    def leave() -> None:
        raise SystemExit(7)

    async def main() -> None:
        asyncio.get_running_loop().call_soon(leave)
        await asyncio.sleep(1)

    with pytest.raises(SystemExit) as info:
        asyncio.run(main())
    assert info.value.code == 7


def test_a_callback_that_cancels_its_own_handle(counter: StepCounter) -> None:
    # Handle.cancel() clears _callback and _args while the callback runs.
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        ran: list[int] = []
        holder: list[asyncio.Handle] = []

        def cb(x: int) -> None:
            holder[0].cancel()
            ran.append(x)

        holder.append(loop.call_soon(cb, 5))
        await asyncio.sleep(0.01)
        return ran

    assert asyncio.run(main()) == [5]


def test_contextvars_are_those_of_the_handle(counter: StepCounter) -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="outer")

    async def child() -> str:
        await asyncio.sleep(0)
        return var.get()

    async def main() -> tuple[str, str]:
        var.set("task-copy")
        task = asyncio.create_task(child())
        var.set("changed after")
        return await task, var.get()

    assert asyncio.run(main()) == ("task-copy", "changed after")


def test_taking_from_another_thread_loses_no_step() -> None:
    # Only the C hook allows it (Python code can switch threads mid-update).
    counter = StepCounter(hook_kind="c")
    counter.install()
    taken: dict[Any, int] = {}
    stop = threading.Event()
    take = counter.registry.take

    def add(window: list[tuple[Any, int, float]]) -> None:
        for stat, steps, _ in window:
            taken[stat] = taken.get(stat, 0) + steps

    def drain_often() -> None:
        while not stop.is_set():
            add(take()[0])

    async def resumes_then_waits(n: int, until: asyncio.Event) -> None:
        await resumes(n)
        await until.wait()  # pending again: its steps stay in the window for take()

    async def main() -> list[Any]:
        assert counter.install_factory(asyncio.get_running_loop(), wrap=False)
        until = asyncio.Event()
        tasks = [asyncio.create_task(resumes_then_waits(2000, until)) for _ in range(20)]
        stats = [counter.stat(t) for t in tasks]
        while any(s.steps < 2001 for s in stats):
            await asyncio.sleep(0.001)
        stop.set()
        thread.join()
        add(take()[0])
        until.set()
        await asyncio.gather(*tasks)
        return stats

    thread = threading.Thread(target=drain_often)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch as often as possible
    try:
        thread.start()
        stats = asyncio.run(main())
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old)
        counter.uninstall()
    assert len(taken) > 0
    # Each task's 2001 steps before it waited were taken exactly once between the threads.
    assert [taken.get(s, 0) for s in stats] == [2001] * 20
    assert [s.steps for s in stats] == [2002] * 20  # and one more to finish


def test_eager_first_steps_are_counted(counter: StepCounter) -> None:
    if not hasattr(asyncio, "eager_task_factory"):
        pytest.skip("eager task factories exist from Python 3.12")

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(asyncio.eager_task_factory)
        assert counter.install_factory(loop, wrap=False)
        task = loop.create_task(resumes(3))
        stat = counter.stat(task)
        await task
        return stat

    stat = asyncio.run(main())
    assert stat.steps == 4


def test_the_factory_keeps_the_programs_factory_and_gives_it_back(counter: StepCounter) -> None:
    made: list[Any] = []

    def programs_factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    async def main() -> int:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(programs_factory)
        assert counter.install_factory(loop, wrap=False)
        assert loop.get_task_factory() is not programs_factory
        task = loop.create_task(resumes(2), name="named")
        assert task.get_name() == "named" and made == [task]
        await task
        counter.uninstall()
        assert loop.get_task_factory() is programs_factory
        counter.install()
        return len(made)

    assert asyncio.run(main()) == 1


def test_many_coroutine_functions_each_get_their_own_group(counter: StepCounter) -> None:
    """More coroutine functions than the C registry's code-address cache has slots (64),
    their tasks interleaved: each group counts exactly its own tasks, never those of a
    function that shared its cache slot."""
    functions = []
    for i in range(150):
        namespace: dict[str, Any] = {"asyncio": asyncio}
        exec(
            f"async def handler_{i}(n):\n    for _ in range(n):\n        await asyncio.sleep(0)",
            namespace,
        )
        functions.append(namespace[f"handler_{i}"])

    async def main() -> dict[str, tuple[int, int]]:
        assert counter.install_factory(asyncio.get_running_loop(), wrap=False)
        for rnd in range(3):
            await asyncio.gather(*(f(i % 3) for i, f in enumerate(functions) if i % 3 <= rnd))
        return {
            g.code.co_name: (g.started, g.steps)
            for g in counter.groups()
            if getattr(g.code, "co_name", "").startswith("handler_")
        }

    groups = asyncio.run(main())
    assert len(groups) == 150
    for i in range(150):
        tasks = 3 - i % 3  # handler i runs in rounds i % 3 .. 2
        assert groups[f"handler_{i}"] == (tasks, tasks * (i % 3 + 1)), i
