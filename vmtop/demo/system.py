"""The demo actor system: one actor for every column of the monitor (see docs/demo.md).

Task names (``asyncio.Task.get_name()``), fixed because docs and tests refer to them::

    supervisor                     owns every actor below, restarts the ones that fail
    producer-1, producer-2         200 work items/s each to the router
    router                         round-robin to worker-1..3, every 4th item to slow-consumer,
                                   every 10th item also to the disk-writer thread
    worker-1 .. worker-3           fast consumers (worker-3 fails every ~20 s and is restarted)
    slow-consumer                  ~20 ms per item: its bounded mailbox grows
    cruncher                       pure-Python CPU in 3 ms steps, capped at ~35 % of a core
    hoarder                        keeps ~100 KB/s of objects (resets at 200 MB)
    blocker                        blocks the event loop for 0.25 s every 5 s
    publisher, subscriber-1..3     one shared, bounded "pubsub" queue with three consumers
    idle-000 .. idle-299           blocked forever on an empty mailbox

plus the daemon thread ``disk-writer`` consuming a ``queue.Queue``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any

from vmtop.demo.actors import Actor, Mailbox, Supervisor, TickingActor

__all__ = ["DemoConfig", "DemoSystem", "DiskWriter", "WorkItem", "idle_names"]

log = logging.getLogger("vmtop.demo")


@dataclass(frozen=True)
class DemoConfig:
    """Every rate and size of the demo. The defaults are what ``vmtop demo`` shows."""

    idle: int = 300
    seed: int | None = None
    producer_rate: float = 200.0  # work items per second, per producer
    producer_interval: float = 0.04  # seconds between a producer's batches
    slow_delay: float = 0.02  # seconds slow-consumer spends on one item
    slow_capacity: int = 5000  # slow-consumer's mailbox bound (then drop and count)
    crash_every: float = 20.0  # worker-3 fails about this often (0: never)
    cruncher_step: float = 0.003  # seconds of pure-Python work per cruncher step
    cruncher_burst: int = 10  # steps per burst, each followed by ``await asyncio.sleep(0)``
    cruncher_duty: float = 0.35  # the cruncher's cap, as a share of one core
    hoard_rate: int = 100_000  # bytes per second the hoarder keeps
    hoard_limit: int = 200_000_000  # bytes kept before the hoarder lets go and starts again
    hoard_interval: float = 0.1
    block_every: float = 5.0  # seconds between the blocker's blocking calls
    block_for: float = 0.25  # seconds the event loop is blocked each time
    publish_every: float = 1.0
    publish_burst: int = 50  # events per burst into the pubsub queue
    pubsub_capacity: int = 32  # so the publisher sometimes waits as a blocked putter
    subscriber_delay: float = 0.04  # 3 x 25 events/s: the queue drains in ~0.7 s
    disk_every: int = 10  # the router copies every Nth item to the disk-writer thread
    disk_capacity: int = 1000
    disk_sync: float = 0.002  # simulated fsync per record (thread blocked, GIL released)
    max_restarts: int = 5
    restart_window: float = 60.0
    gateway_rate: float = 200.0  # requests per second: one short task each, as web servers do


def idle_names(count: int) -> list[str]:
    """``idle-000`` .. ``idle-NNN``, zero-padded to at least three digits."""
    width = max(3, len(str(count - 1)))
    return [f"idle-{i:0{width}d}" for i in range(count)]


@dataclass(frozen=True, slots=True)
class WorkItem:
    seq: int
    source: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    topic: str


class SimulatedFault(RuntimeError):
    """Raised on purpose by worker-3 so the supervisor has something to restart."""


def _rng(seed: int | None, name: str) -> random.Random:
    return random.Random(f"{seed}:{name}") if seed is not None else random.Random()


# --------------------------------------------------------------------------- actors


class Producer(TickingActor):
    """Sends ``rate`` work items per second to the router, in a batch every ``interval``."""

    def __init__(self, name: str, router: Actor, rate: float, interval: float, seed: int | None):
        super().__init__(name)
        self.router = router
        self.rate = rate
        self.interval = interval
        self.rng = _rng(seed, name)
        self.sent = 0
        self._credit = 0.0
        self._last = time.monotonic()

    def started(self) -> None:
        self._last = time.monotonic()
        super().started()

    async def tick(self) -> None:
        self.produce_batch()
        await asyncio.sleep(self.interval)

    def produce_batch(self) -> None:
        now = time.monotonic()
        # Items are due at a steady rate; after a stall (the blocker) catch up, at most 1 s worth.
        self._credit = min(self._credit + (now - self._last) * self.rate, self.rate)
        self._last = now
        due = int(self._credit)
        self._credit -= due
        for _ in range(due):
            self.sent += 1
            # Made here (not by random.randbytes) so an allocation report names this line.
            payload = self.rng.getrandbits(512).to_bytes(64, "little")
            self.router.tell(WorkItem(self.sent, self.name, payload))


class Worker(Actor):
    """A fast consumer: a few microseconds per item, so its mailbox stays near 0."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.checksum = 0

    async def receive(self, msg: Any) -> None:
        self.process(msg)

    def process(self, item: WorkItem) -> None:
        self.checksum = zlib.crc32(item.payload, self.checksum)


class FlakyWorker(Worker):
    """A worker that fails about every ``crash_every`` seconds (a simulated fault)."""

    def __init__(self, name: str, crash_every: float, seed: int | None) -> None:
        super().__init__(name)
        self.crash_every = crash_every
        self.rng = _rng(seed, name)
        self.crash_at = float("inf")

    def started(self) -> None:
        self.crash_at = time.monotonic() + self.crash_every * self.rng.uniform(0.9, 1.1)

    async def receive(self, msg: Any) -> None:
        if time.monotonic() >= self.crash_at:
            raise SimulatedFault(f"{self.name} failed on item {msg.seq} (on purpose)")
        self.process(msg)


class SlowConsumer(Actor):
    """Spends ~20 ms on each item, slower than items arrive: its (bounded) mailbox grows."""

    def __init__(self, name: str, delay: float, capacity: int) -> None:
        super().__init__(name, capacity=capacity)
        self.delay = delay

    async def receive(self, msg: Any) -> None:
        await self.call_slow_service(msg)

    async def call_slow_service(self, item: WorkItem) -> None:
        await asyncio.sleep(self.delay)


class DiskWriter:
    """The ``disk-writer`` thread: takes items from a ``queue.Queue`` and "writes" each one.

    Per item: a little CPU (compress and format the record) and a short ``time.sleep`` standing
    in for an fsync. Most of the time the thread waits in ``queue.Queue.get``.
    """

    def __init__(self, name: str = "disk-writer", capacity: int = 1000, sync: float = 0.002):
        self.queue: queue.Queue[WorkItem | None] = queue.Queue(capacity)
        self.sync = sync
        self.written = 0
        self.dropped = 0
        self.bytes_written = 0
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self.write_records, name=name, daemon=True)

    def offer(self, item: WorkItem) -> bool:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass  # the thread sees _stopping after its current item
        if self.thread.is_alive():
            self.thread.join(timeout)

    def write_records(self) -> None:
        while not self._stopping.is_set():
            item = self.queue.get()
            if item is None:
                break
            self.write_record(item)

    def write_record(self, item: WorkItem) -> None:
        block = zlib.compress(item.payload * 32)
        line = f"{item.source}\t{item.seq}\t{block.hex()}\n"
        self.bytes_written += len(line)
        self.written += 1
        time.sleep(self.sync)


class Router(Actor):
    """Forwards items: every 4th to slow-consumer, the rest round-robin to the workers."""

    def __init__(
        self,
        name: str,
        workers: list[Actor],
        slow: Actor,
        disk: DiskWriter,
        disk_every: int,
    ):
        super().__init__(name)
        self.workers = workers
        self.slow = slow
        self.disk = disk
        self.disk_every = disk_every
        self.routed = 0
        self._next = 0

    async def receive(self, msg: Any) -> None:
        self.route(msg)

    def route(self, item: WorkItem) -> None:
        self.routed += 1
        if self.routed % 4 == 0:
            self.slow.tell(item)
        else:
            self.workers[self._next].tell(item)
            self._next = (self._next + 1) % len(self.workers)
        if self.routed % self.disk_every == 0:
            self.disk.offer(item)


class Cruncher(TickingActor):
    """CPU-hot: finds primes by trial division in short steps, capped at a share of a core."""

    def __init__(self, name: str, step: float, burst: int, duty: float) -> None:
        super().__init__(name)
        self.step = step
        self.burst = burst
        self.duty = duty
        self.primes: list[int] = [2]  # small primes, enough to test candidates up to 2**32
        self.candidate = 3
        self.found = 1
        self.cpu = 0.0  # thread CPU seconds spent in steps

    async def tick(self) -> None:
        busy = await self.crunch_primes()
        await self.cool_down(busy)

    async def crunch_primes(self) -> float:
        """``burst`` steps of ``step`` seconds each, yielding to the loop between steps.

        Returns the wall time spent in the steps."""
        busy = 0.0
        for _ in range(self.burst):
            started, cpu = time.perf_counter(), time.thread_time()
            self.test_candidates(self.step)
            busy += time.perf_counter() - started
            self.cpu += time.thread_time() - cpu
            await asyncio.sleep(0)
        return busy

    async def cool_down(self, busy: float) -> None:
        """Rest so that time spent crunching stays at ``duty`` of the wall clock."""
        await asyncio.sleep(busy * (1.0 - self.duty) / self.duty)

    def test_candidates(self, budget: float) -> None:
        deadline = time.perf_counter() + budget
        primes = self.primes
        while time.perf_counter() < deadline:
            for _ in range(16):
                n = self.candidate
                self.candidate = n + 2 if n < 50_000_000 else 3
                if is_prime(n, primes):
                    self.found += 1
                    if n < 65_536 and n > primes[-1]:
                        primes.append(n)


def is_prime(n: int, primes: list[int]) -> bool:
    """Trial division by ``primes`` (which must hold every prime up to sqrt(n))."""
    for p in primes:
        if p * p > n:
            return True
        if n % p == 0:
            return False
    return True


class Hoarder(TickingActor):
    """Keeps ``rate`` bytes/s of new objects in ``self.hoard``; lets go of them all at ``limit``."""

    def __init__(self, name: str, rate: int, limit: int, interval: float):
        super().__init__(name)
        self.chunk = max(1, int(rate * interval) // 1024)  # 1 KiB objects per tick
        self.limit = limit
        self.interval = interval
        self.hoard: list[bytes] = []
        self.records = 0
        self.hoarded = 0
        self.resets = 0

    async def tick(self) -> None:
        self.hoard_records()
        await asyncio.sleep(self.interval)

    def hoard_records(self) -> None:
        hoard = self.hoard
        if self.hoarded + self.chunk * 1024 > self.limit:
            hoard.clear()
            self.hoarded = 0
            self.resets += 1
        for _ in range(self.chunk):
            self.records += 1
            hoard.append(b"%08d" % self.records * 128)  # a 1 KiB record, allocated on this line
        self.hoarded += self.chunk * 1024


class Blocker(TickingActor):
    """Every ``every`` seconds makes a blocking call on the event-loop thread."""

    def __init__(self, name: str, every: float, block_for: float) -> None:
        super().__init__(name)
        self.every = every
        self.block_for = block_for
        self.blocks = 0

    async def tick(self) -> None:
        await asyncio.sleep(self.every)
        self.blocking_call()

    def blocking_call(self) -> None:
        """The bug being shown: synchronous I/O (here ``time.sleep``) inside a coroutine."""
        time.sleep(self.block_for)
        self.blocks += 1


class Publisher(TickingActor):
    """Puts a burst of events into the shared ``pubsub`` queue every ``every`` seconds."""

    def __init__(self, name: str, topic: Mailbox, every: float, burst: int) -> None:
        super().__init__(name)
        self.topic = topic
        self.every = every
        self.burst = burst
        self.published = 0

    async def tick(self) -> None:
        await self.publish_burst()
        await asyncio.sleep(self.every)

    async def publish_burst(self) -> None:
        for _ in range(self.burst):
            self.published += 1
            # A bounded queue: when it is full the publisher waits here (a blocked putter).
            await self.topic.put(Event(self.published, self.topic.name))


class Subscriber(Actor):
    """One of three consumers of the shared ``pubsub`` queue."""

    def __init__(self, name: str, topic: Mailbox, delay: float) -> None:
        super().__init__(name, mailbox=topic)
        self.delay = delay

    async def receive(self, msg: Any) -> None:
        await self.handle_event(msg)

    async def handle_event(self, event: Event) -> None:
        await asyncio.sleep(self.delay)


class Gateway(TickingActor):
    """A web front end in miniature: one short task per request, as aiohttp and uvicorn make
    them; each awaits a lookup of a few milliseconds. They show as one group (``g`` in the
    TUI, ``vmtop top --group coro``), not as rows."""

    def __init__(self, name: str, rate: float, interval: float, seed: int | None) -> None:
        super().__init__(name)
        self.rate = rate
        self.interval = interval
        self.rng = _rng(seed, name)
        self.served = 0
        self._inflight: set[asyncio.Task[int]] = set()

    async def tick(self) -> None:
        for _ in range(max(1, int(self.rate * self.interval))):
            self.served += 1
            task = asyncio.create_task(self.handle_request(self.served), name="request")
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        await asyncio.sleep(self.interval)

    async def handle_request(self, n: int) -> int:
        await asyncio.sleep(self.rng.uniform(0.001, 0.004))  # the lookup
        return n


class IdleActor(Actor):
    """Waits on an empty mailbox forever: the long tail of a real actor system."""

    async def receive(self, msg: Any) -> None:
        return None


# --------------------------------------------------------------------------- composition


class DemoSystem:
    """Builds the actors; :meth:`start` runs them under the supervisor, :meth:`stop` ends all."""

    def __init__(self, config: DemoConfig | None = None) -> None:
        cfg = self.config = config or DemoConfig()
        seed = cfg.seed
        self.disk_writer = DiskWriter("disk-writer", cfg.disk_capacity, cfg.disk_sync)
        workers: list[Actor] = [Worker("worker-1"), Worker("worker-2")]
        workers.append(
            FlakyWorker("worker-3", cfg.crash_every, seed)
            if cfg.crash_every > 0
            else Worker("worker-3")
        )
        self.slow_consumer = SlowConsumer("slow-consumer", cfg.slow_delay, cfg.slow_capacity)
        self.router = Router(
            "router", workers, self.slow_consumer, self.disk_writer, cfg.disk_every
        )
        producers = [
            Producer(f"producer-{i}", self.router, cfg.producer_rate, cfg.producer_interval, seed)
            for i in (1, 2)
        ]
        self.pubsub = Mailbox("pubsub", cfg.pubsub_capacity)
        self.cruncher = Cruncher(
            "cruncher", cfg.cruncher_step, cfg.cruncher_burst, cfg.cruncher_duty
        )
        self.hoarder = Hoarder("hoarder", cfg.hoard_rate, cfg.hoard_limit, cfg.hoard_interval)
        self.blocker = Blocker("blocker", cfg.block_every, cfg.block_for)
        publisher = Publisher("publisher", self.pubsub, cfg.publish_every, cfg.publish_burst)
        subscribers = [
            Subscriber(f"subscriber-{i}", self.pubsub, cfg.subscriber_delay) for i in (1, 2, 3)
        ]
        gateway = Gateway("gateway", cfg.gateway_rate, 0.05, seed)
        idle = [IdleActor(name) for name in idle_names(cfg.idle)]
        children: list[Actor] = [
            *producers,
            self.router,
            *workers,
            self.slow_consumer,
            self.cruncher,
            self.hoarder,
            self.blocker,
            publisher,
            *subscribers,
            gateway,
            *idle,
        ]
        self.actors: dict[str, Actor] = {a.name: a for a in children}
        self.supervisor = Supervisor(
            "supervisor", children, max_restarts=cfg.max_restarts, within=cfg.restart_window
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Start the disk-writer thread and the supervisor task (call on the running loop)."""
        self.disk_writer.start()
        self.task = asyncio.create_task(self.supervisor.run(), name=self.supervisor.name)
        return self.task

    async def stop(self) -> None:
        """Cancel the supervisor (which cancels and awaits every actor), stop the thread."""
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        self.disk_writer.stop()
