"""A tiny actor framework on plain asyncio: actors with mailboxes, and a one_for_one supervisor.

An actor is an object with a ``name``, a mailbox (an ``asyncio.Queue``) and an
``async def receive(self, msg)``. Its task runs :meth:`Actor.run`, which is literally::

    msg = await self.mailbox.get()
    await self.receive(msg)

so a monitor that walks a suspended task's await chain down to ``asyncio.Queue.get`` finds the
queue that task consumes (``f_locals["self"]`` of that frame) and can call it the task's mailbox.

:class:`Supervisor` starts each child as a task named after the actor and restarts a child whose
task ends with an exception or is cancelled (one_for_one), at most ``max_restarts`` times within
``within`` seconds; past that it stops its children and fails with
:class:`RestartIntensityExceeded` (Erlang's restart intensity). As in Akka, a restart keeps the
actor's mailbox: messages queued behind the one that crashed are not lost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Actor",
    "ChildExited",
    "Mailbox",
    "RestartIntensityExceeded",
    "Supervisor",
    "Tick",
    "TickingActor",
]

log = logging.getLogger("vmtop.demo")


class Mailbox(asyncio.Queue[Any]):
    """An ``asyncio.Queue`` with a ``name`` (a label a monitor may show) and a drop counter.

    ``get`` is not overridden, so a consumer suspended in it is found by the same
    ``Queue.get.__code__`` test as any other ``asyncio.Queue``.
    """

    def __init__(self, name: str, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.name = name
        self.dropped = 0

    def offer(self, msg: Any) -> bool:
        """Put without waiting; when the queue is full, drop ``msg``, count it, return False."""
        try:
            self.put_nowait(msg)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True


class Actor:
    """Base actor: subclasses implement :meth:`receive`.

    ``capacity`` bounds the mailbox (0: unbounded). Pass ``mailbox`` to share one queue between
    several actors (a work queue with several consumers).
    """

    def __init__(self, name: str, *, capacity: int = 0, mailbox: Mailbox | None = None) -> None:
        self.name = name
        self.mailbox = mailbox if mailbox is not None else Mailbox(f"mailbox:{name}", capacity)
        self.handled = 0
        self.restarts = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} mailbox={self.mailbox.qsize()}>"

    def tell(self, msg: Any) -> bool:
        """Fire and forget (Erlang ``!``): never waits; a full mailbox drops and counts."""
        return self.mailbox.offer(msg)

    async def send(self, msg: Any) -> None:
        """Deliver ``msg``, waiting for room when the mailbox is bounded and full (backpressure)."""
        await self.mailbox.put(msg)

    def started(self) -> None:
        """Called at the start of :meth:`run`, on the first start and after every restart."""

    async def receive(self, msg: Any) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        """The actor loop: take the next message, handle it, forever."""
        self.started()
        while True:
            msg = await self.mailbox.get()
            await self.receive(msg)
            self.handled += 1


@dataclass(frozen=True, slots=True)
class Tick:
    """A self-addressed "do your periodic work" message. ``generation`` drops stale ticks."""

    generation: int


class TickingActor(Actor):
    """An actor that drives itself: each :class:`Tick` it handles ends by telling itself the next.

    It is still an ordinary actor (same loop, counts ticks as messages handled); a restart sends
    a fresh tick and makes ticks left over from before the restart stale, so it never runs twice.
    """

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.generation = 0

    def started(self) -> None:
        self.generation += 1
        self.tell(Tick(self.generation))

    async def receive(self, msg: Any) -> None:
        if isinstance(msg, Tick):
            if msg.generation != self.generation:
                return
            await self.tick()
            self.tell(Tick(self.generation))
        else:
            await self.handle(msg)

    async def tick(self) -> None:
        """One round of periodic work, including the pause before the next round."""
        raise NotImplementedError

    async def handle(self, msg: Any) -> None:
        """A message that is not a tick (none of the demo's ticking actors gets one)."""


@dataclass(frozen=True, slots=True)
class ChildExited:
    """What the supervisor's mailbox receives when a child's task ends."""

    actor: Actor
    task: asyncio.Task[None]


class RestartIntensityExceeded(RuntimeError):
    """More than ``max_restarts`` restarts within ``within`` seconds: the supervisor gives up."""


class Supervisor(Actor):
    """Owns child actors: starts each as a task named after it, restarts it when it fails.

    Strategy one_for_one: only the failed child restarts. A child fails when its task raises or
    is cancelled by someone else (for instance a monitor's "cancel task" action); a child whose
    ``run`` returns normally is not restarted. Stopping the supervisor (cancelling its task)
    cancels all children and waits for them.
    """

    def __init__(
        self,
        name: str,
        children: list[Actor],
        *,
        max_restarts: int = 5,
        within: float = 60.0,
    ) -> None:
        super().__init__(name)
        self.children = list(children)
        self.max_restarts = max_restarts
        self.within = within
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.restarts_by_child: dict[str, int] = {}
        self._recent: deque[float] = deque()

    def start_child(self, actor: Actor) -> asyncio.Task[None]:
        task = asyncio.create_task(actor.run(), name=actor.name)
        task.add_done_callback(functools.partial(self._child_done, actor))
        self.tasks[actor.name] = task
        return task

    def _child_done(self, actor: Actor, task: asyncio.Task[None]) -> None:
        self.tell(ChildExited(actor, task))

    async def run(self) -> None:
        for child in self.children:
            self.start_child(child)
        try:
            await super().run()
        finally:
            await self.stop_children()

    async def stop_children(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def receive(self, msg: Any) -> None:
        if not isinstance(msg, ChildExited):
            return
        actor, task = msg.actor, msg.task
        if self.tasks.get(actor.name) is not task:
            return  # an older incarnation
        if task.cancelled():
            reason = "cancelled"
        else:
            exc = task.exception()
            if exc is None:
                del self.tasks[actor.name]
                log.info("%s: %s finished", self.name, actor.name)
                return
            reason = f"{type(exc).__name__}: {exc}"
        self._check_intensity(actor.name, reason)
        actor.restarts += 1
        self.restarts_by_child[actor.name] = actor.restarts
        log.info(
            "%s: restarting %s (%s), restart %d", self.name, actor.name, reason, actor.restarts
        )
        self.start_child(actor)

    def _check_intensity(self, child: str, reason: str) -> None:
        now = time.monotonic()
        recent = self._recent
        recent.append(now)
        while recent and now - recent[0] > self.within:
            recent.popleft()
        if len(recent) > self.max_restarts:
            raise RestartIntensityExceeded(
                f"{self.name}: {child} failed ({reason}); more than {self.max_restarts} "
                f"restarts within {self.within:g} s, giving up"
            )
