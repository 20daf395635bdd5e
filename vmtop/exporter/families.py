"""Snapshots -> Prometheus metric families (names, units and types by Prometheus's rules).

Every series carries ``pid`` and ``program``. Counters come from the agent's totals since the
exporter attached (``*_total`` fields), so a reconnect is a counter reset, which ``rate()``
handles. A figure the agent could not measure (``None``) is left out, never sent as 0.
The series budget per target is in ``budget.py`` and docs/prometheus.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from vmtop.exporter.budget import OTHER, GroupBudget, top_mailboxes
from vmtop.records import NodeInfo, Snapshot

BASE = ["pid", "program"]
QUANTILES = ("0.5", "0.99", "1")  # p50, p99 and max, as Prometheus spells quantiles


@dataclass
class Observation:
    """One target at one scrape."""

    pid: int
    program: str
    snapshot: Snapshot
    cpu_seconds: float | None  # user + system, read by the exporter from /proc
    budget: GroupBudget


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=BASE + (labels or []))


def _counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
    # prometheus_client appends "_total" to a counter's samples: name it without.
    return CounterMetricFamily(name, doc, labels=BASE + (labels or []))


class Families:
    """The metric families of one scrape: ``add`` each target's observation, then ``all``."""

    def __init__(self) -> None:
        self.info = _gauge("vmtop_target_info", "A target with an agent (1)", ["python", "agent"])
        self.start = _gauge("vmtop_process_start_time_seconds", "Target start time, Unix seconds")
        self.rss = _gauge("vmtop_resident_memory_bytes", "Resident set size of the target")
        self.cpu = _counter("vmtop_cpu_seconds", "User and system CPU time of the target")
        self.threads = _gauge("vmtop_threads", "Python threads of the target (not the agent's)")
        self.tasks = _gauge("vmtop_tasks", "asyncio tasks alive")
        self.created = _counter("vmtop_tasks_created", "asyncio tasks created since attach")
        self.finished = _counter("vmtop_tasks_finished", "asyncio tasks finished since attach")
        loop = ["loop"]
        self.loop_tasks = _gauge("vmtop_loop_tasks", "asyncio tasks alive on the loop", loop)
        self.ready = _gauge(
            "vmtop_loop_ready_callbacks", "Callbacks in the loop's ready queue (run queue)", loop
        )
        self.lag = _gauge(
            "vmtop_loop_lag_seconds",
            "Event-loop lag: how late a 25 ms call_later probe ran, over the last 10 s",
            ["loop", "quantile"],
        )
        self.blocked = _gauge(
            "vmtop_loop_blocked_seconds", "How long the loop has not answered (0: it did)", loop
        )
        gen = ["generation"]
        self.gc_runs = _counter("vmtop_gc_collections", "Garbage collections", gen)
        self.gc_collected = _counter(
            "vmtop_gc_collected_objects", "Objects freed by the cycle collector", gen
        )
        self.gc_uncollectable = _counter(
            "vmtop_gc_uncollectable_objects", "Objects found uncollectable", gen
        )
        self.gc_pause = _counter("vmtop_gc_pause_seconds", "Time spent in collections", gen)
        grp = ["coro", "location"]
        self.g_steps = _counter(
            "vmtop_group_steps", "Task steps (reductions) of a coroutine function's tasks", grp
        )
        self.g_secs = _counter(
            "vmtop_group_step_seconds", "Wall time inside the steps of the group's tasks", grp
        )
        self.g_started = _counter("vmtop_group_tasks_started", "Tasks of the group created", grp)
        self.g_finished = _counter("vmtop_group_tasks_finished", "Tasks of the group finished", grp)
        self.g_live = _gauge("vmtop_group_tasks", "Tasks of the group alive", grp)
        self.g_life = _gauge(
            "vmtop_group_task_lifetime_seconds",
            "Creation-to-completion time of the group's tasks finished since the last scrape",
            [*grp, "quantile"],
        )
        self.mailbox = _gauge(
            "vmtop_mailbox_messages",
            "Items waiting in the longest mailboxes (queues, consumers); name=other: the rest",
            ["kind", "name"],
        )
        self.loop_time = _gauge(
            "vmtop_snapshot_loop_seconds", "Seconds the last snapshot held the target's loops"
        )

    def all(self) -> list[Metric]:
        return [f for f in vars(self).values() if isinstance(f, Metric)]

    def add(self, o: Observation) -> None:
        base = [str(o.pid), o.program]
        self._node(base, o)
        self._loops(base, o.snapshot.node)
        self._gc(base, o.snapshot.node)
        self._groups(base, o)
        for (kind, name), items in top_mailboxes(o.snapshot.rows).items():
            self.mailbox.add_metric([*base, kind, name], items)
        self.loop_time.add_metric(base, o.snapshot.loop_time)

    def _node(self, base: list[str], o: Observation) -> None:
        node = o.snapshot.node
        self.info.add_metric([*base, node.python, node.agent_version], 1)
        self.start.add_metric(base, o.snapshot.taken_at - node.uptime)
        if node.rss is not None:
            self.rss.add_metric(base, node.rss)
        if o.cpu_seconds is not None:
            self.cpu.add_metric(base, o.cpu_seconds)
        self.threads.add_metric(base, node.threads)
        self.tasks.add_metric(base, node.tasks)
        if node.tasks_created_total is not None:
            self.created.add_metric(base, node.tasks_created_total)
        if node.tasks_finished_total is not None:
            self.finished.add_metric(base, node.tasks_finished_total)

    def _loops(self, base: list[str], node: NodeInfo) -> None:
        for loop in node.loops:
            labels = [*base, loop.name]
            self.ready.add_metric(labels, loop.ready)
            self.loop_tasks.add_metric(labels, loop.tasks)
            self.blocked.add_metric(labels, loop.blocked_for or 0.0)
            for q, value in zip(QUANTILES, (loop.lag_p50, loop.lag_p99, loop.lag_max), strict=True):
                if value is not None:
                    self.lag.add_metric([*labels, q], value)

    def _gc(self, base: list[str], node: NodeInfo) -> None:
        for gen, g in enumerate(node.gc):
            labels = [*base, str(gen)]
            self.gc_runs.add_metric(labels, g.collections)
            self.gc_collected.add_metric(labels, g.collected)
            self.gc_uncollectable.add_metric(labels, g.uncollectable)
            self.gc_pause.add_metric(labels, g.pause_total)

    def _groups(self, base: list[str], o: Observation) -> None:
        budget = o.budget
        budget.update(o.snapshot.groups)
        now = {g.key: g for g in o.snapshot.groups}
        for key, (coro, where) in budget.labelled.items():
            t, row = budget.last[key], now.get(key)
            labels = [*base, coro, where]
            self._group_counters(labels, t.steps, t.seconds, t.started, t.finished)
            self.g_live.add_metric(labels, row.live if row else 0)
            if row is not None:
                lives = (row.lifetime_p50, row.lifetime_p99, row.lifetime_max)
                for q, value in zip(QUANTILES, lives, strict=True):
                    if value is not None:
                        self.g_life.add_metric([*labels, q], value)
        if budget.has_other():
            t = budget.other()
            labels = [*base, OTHER, ""]
            self._group_counters(labels, t.steps, t.seconds, t.started, t.finished)
            live = sum(g.live for g in o.snapshot.groups if g.key not in budget.labelled)
            self.g_live.add_metric(labels, live)

    def _group_counters(
        self, labels: list[str], steps: int, secs: float, started: int, finished: int
    ) -> None:
        self.g_steps.add_metric(labels, steps)
        self.g_secs.add_metric(labels, secs)
        self.g_started.add_metric(labels, started)
        self.g_finished.add_metric(labels, finished)
