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
