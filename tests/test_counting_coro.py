"""The task factory's counting coroutine (C): exact steps where no Handle hook reaches
(uvloop), and a task that behaves as without it."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from vmtop.agent.step_hooks import StepCounter, c_hook_available

pytestmark = pytest.mark.internals


def run_uvloop(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    import uvloop

    return uvloop.run(main())


@pytest.fixture
def counter() -> Iterator[StepCounter]:
    assert c_hook_available(), "pip install -e . should have compiled the C hooks"
    steps = StepCounter(hook_kind="c")
    steps.install()
    try:
        yield steps
    finally:
        steps.uninstall()


async def scripted(n: int) -> str:
    for _ in range(n):
        await asyncio.sleep(0)
    return "result"


def test_steps_are_exact_and_the_task_is_unchanged(counter: StepCounter) -> None:
    async def main() -> tuple[Any, str, str, Any]:
        loop = asyncio.get_running_loop()
        assert counter.install_factory(loop, wrap=True)
        task = loop.create_task(scripted(9), name="scripted")
        stat = counter.stat(task)
        assert stat is not None and stat.task is task
        coro = task.get_coro()
        assert coro.__qualname__.endswith("scripted") and coro.cr_frame is not None
        assert "scripted" in repr(task)
        result = await task
        return stat, result, task.get_name(), task.get_stack()

    stat, result, name, stack = run_uvloop(main)
    assert (result, name, stack) == ("result", "scripted", [])
    assert stat.steps == 10  # the first step, then one per sleep(0)
    assert stat.finished and stat.task is None
    assert stat.group.finished == 1 and sum(stat.group.hist) == 1


async def raises() -> None:
    await asyncio.sleep(0)
    raise ValueError("boom")


async def sleeps() -> None:
    await asyncio.sleep(3600)


def test_exceptions_and_cancellation_reach_the_program(counter: StepCounter) -> None:
    async def main() -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        assert counter.install_factory(loop, wrap=True)
        failing = loop.create_task(raises())
        with pytest.raises(ValueError, match="boom"):
            await failing
        cancelled = loop.create_task(sleeps())
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert cancelled.cancelled()
        return counter.stat(failing), failing.get_coro()

    stat, _ = run_uvloop(main)
    assert stat is None  # finished: no entry left
    groups = {g.code.co_name: g for g in counter.groups() if hasattr(g.code, "co_name")}
    assert (groups["raises"].failed, groups["raises"].steps) == (1, 2)
    assert (groups["sleeps"].cancelled, groups["sleeps"].steps) == (1, 2)


def test_a_dropped_pending_uvloop_task_is_freed(counter: StepCounter) -> None:
    async def waits_on(fut: asyncio.Future[None]) -> None:
        await fut

    async def main() -> weakref.ref[Any]:
        loop = asyncio.get_running_loop()
        assert counter.install_factory(loop, wrap=True)
        lost = loop.create_task(waits_on(loop.create_future()))
        await asyncio.sleep(0)
        ref = weakref.ref(lost)
        del lost
        gc.collect()
        return ref

    ref = run_uvloop(main)
    assert ref() is None
    assert counter.registry.abandoned == 1


def test_tasks_older_than_the_attach_say_why_they_are_not_counted(counter: StepCounter) -> None:
    async def main() -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        old = loop.create_task(sleeps())
        assert counter.install_factory(loop, wrap=True)
        new = loop.create_task(sleeps())
        await asyncio.sleep(0)
        result = counter.stat(old), counter.stat(new)
        old.cancel()
        new.cancel()
        return result

    old, new = run_uvloop(main)
    assert old is None and new is not None and new.steps >= 1


def _group(counter: StepCounter, name: str) -> Any:
    return next(g for g in counter.groups() if getattr(g.code, "co_name", None) == name)


def test_tasks_that_end_before_a_refresh_never_get_an_entry(counter: StepCounter) -> None:
    """A request task that ends between two refreshes costs its proxy only: no TaskStat, no
    weak reference, nothing to take, and its group has every count exact."""

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        assert counter.install_factory(loop, wrap=True)
        tasks = [loop.create_task(scripted(2)) for _ in range(100)]
        await asyncio.gather(*tasks)
        return [t.get_coro() for t in tasks]

    proxies = run_uvloop(main)
    assert all(p._vmtop_stat is None for p in proxies)  # never registered
    assert counter.registry.live() == 0
    taken, _ = counter.registry.take()
    assert taken == []
    group = _group(counter, "scripted")
    assert (group.started, group.finished, group.live, group.steps) == (100, 100, 0, 300)
    assert sum(group.hist) == 100 and group.secs > 0


def test_a_pending_task_gets_its_entry_at_the_next_take(counter: StepCounter) -> None:
    """A task still pending at a refresh is registered then, with its steps so far in the
    window; its later steps count into that entry, and its end folds it once."""

    async def main() -> tuple[Any, Any, Any]:
        loop = asyncio.get_running_loop()
        assert counter.install_factory(loop, wrap=True)
        gate = asyncio.Event()

        async def waits() -> None:
            for _ in range(3):
                await asyncio.sleep(0)
            await gate.wait()
            for _ in range(2):
                await asyncio.sleep(0)

        task = loop.create_task(waits())
        for _ in range(5):
            await asyncio.sleep(0)
        proxy = task.get_coro()
        assert proxy._vmtop_stat is None and task in gc.get_referents(proxy)
        taken, _ = counter.registry.take()
        first = [(s.task, n) for s, n, _ in taken]
        stat = proxy._vmtop_stat
        assert task not in gc.get_referents(proxy)  # the entry's weak reference took over
        gate.set()
        await task
        return first, stat, task

    first, stat, task = run_uvloop(main)
    assert first == [(task, 4)]  # the first step and three sleeps
    assert stat.steps == 7 and stat.finished and stat.task is None
    group = _group(counter, "waits")
    assert (group.started, group.finished, group.live, group.steps) == (1, 1, 0, 7)


def test_stat_registers_a_task_that_never_stepped(counter: StepCounter) -> None:
    async def main() -> tuple[Any, int]:
        loop = asyncio.get_running_loop()
        assert counter.install_factory(loop, wrap=True)
        task = loop.create_task(scripted(1))
        stat = counter.stat(task)
        assert stat is not None and stat.task is task and stat.steps == 0
        taken, _ = counter.registry.take()
        await task
        return stat, len(taken)

    stat, taken = run_uvloop(main)
    assert taken == 0  # nothing stepped yet: nothing to take
    assert stat.steps == 2 and stat.finished


def test_detach_lets_go_of_unregistered_tasks(counter: StepCounter) -> None:
    """The proxy of a pending, unregistered task holds its task until then: a detach drops
    that reference, and the task's end afterwards still folds it (into a registry nobody
    reads any more)."""

    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        assert counter.install_factory(loop, wrap=True)
        fut = loop.create_future()
        task = loop.create_task(waits_on_future(fut))
        await asyncio.sleep(0)
        proxy = task.get_coro()
        held = task in gc.get_referents(proxy)
        group = _group(counter, "waits_on_future")
        counter.uninstall()
        released = task not in gc.get_referents(proxy)
        fut.set_result(None)
        await task
        assert (group.live, group.finished) == (0, 1)
        return held, released

    assert run_uvloop(main) == (True, True)


async def waits_on_future(fut: asyncio.Future[None]) -> None:
    await fut
