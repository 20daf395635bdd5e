"""The exporter's metric families from snapshot records: names, types, labels, what a missing
figure becomes, and the cardinality budget. The records are built here as the agent builds
them; the exposition text is prometheus_client's own."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.exporter_helpers import dashboard_queries  # noqa: E402
from vmtop.exporter.address import parse_listen  # noqa: E402
from vmtop.exporter.budget import GROUPS_K, MAILBOXES_K, GroupBudget  # noqa: E402
from vmtop.exporter.families import Families, Observation  # noqa: E402
from vmtop.exporter.targets import program_name  # noqa: E402
from vmtop.records import GenGC, GroupRow, LoopStats, NodeInfo, ProcessRow, Snapshot  # noqa: E402


def node(**kw: object) -> NodeInfo:
    base: dict[str, object] = dict(
        pid=42, argv=("app.py",), python="3.11.7", implementation="CPython", uptime=10.0,
        cpu_percent=5.0, rss=1 << 20, threads=2, tasks=7,
        loops=(LoopStats("loop-MainThread", "MainThread", 1, 7, 3, 0.001, 0.004, 0.009),),
        gc=(GenGC(5, 100, 0, 0.002, 0.001), GenGC(1, 10, 0, 0.001, 0.001), GenGC(0, 0, 0, 0.0, 0.0)),
        agent_version="0.1.0",
    )  # fmt: skip
    base.update(kw)
    return NodeInfo(**base)  # type: ignore[arg-type]


def group(name: str, steps: int, live: int = 0) -> GroupRow:
    return GroupRow(
        key=f"group:{name}@/srv/app.py:1", coro=name, file="/srv/app.py", line=1, live=live,
        started_total=steps, finished_total=steps - live, reductions_total=steps * 3,
        time_total=steps * 0.001, lifetime_p50=0.01, lifetime_p99=None,
    )  # fmt: skip


def snapshot(n: NodeInfo | None = None, groups: tuple[GroupRow, ...] = (), rows=()) -> Snapshot:
    return Snapshot(
        node=n or node(), rows=tuple(rows), sort="mailbox", accumulate=False, interval=1.0,
        total_rows=len(rows), taken_at=1000.0, cost=0.001, loop_time=0.0005, groups=groups,
    )  # fmt: skip


def scrape(*observations: Observation) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Exposition text through prometheus_client and back: sample name -> labels -> value."""

    class One:
        def collect(self):  # type: ignore[no-untyped-def]
            f = Families()
            for o in observations:
                f.add(o)
            return f.all()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def obs(snap: Snapshot, budget: GroupBudget | None = None, cpu: float | None = 1.5) -> Observation:
    return Observation(42, "app", snap, cpu, budget or GroupBudget())


def one(samples: dict[tuple[tuple[str, str], ...], float], **labels: str) -> float:
    want = {"pid": "42", "program": "app", **labels}
    [value] = [v for k, v in samples.items() if dict(k) == want]
    return value


def test_node_loop_and_gc_families_with_units_and_labels() -> None:
    m = scrape(obs(snapshot()))
    assert one(m["vmtop_resident_memory_bytes"]) == 1 << 20
    assert one(m["vmtop_cpu_seconds_total"]) == 1.5
    assert one(m["vmtop_tasks"]) == 7
    assert one(m["vmtop_loop_ready_callbacks"], loop="loop-MainThread") == 3
    assert one(m["vmtop_loop_lag_seconds"], loop="loop-MainThread", quantile="0.99") == 0.004
    assert one(m["vmtop_loop_lag_seconds"], loop="loop-MainThread", quantile="1") == 0.009
    assert one(m["vmtop_gc_collections_total"], generation="0") == 5
    assert one(m["vmtop_gc_collected_objects_total"], generation="1") == 10
    assert one(m["vmtop_gc_pause_seconds_total"], generation="0") == 0.002
    assert one(m["vmtop_process_start_time_seconds"]) == 990.0


def test_a_figure_the_agent_could_not_measure_is_left_out() -> None:
    n = node(rss=None, loops=(LoopStats("loop-MainThread", "MainThread", 1, 0, 0),))
    m = scrape(obs(snapshot(n), cpu=None))
    assert "vmtop_resident_memory_bytes" not in m
    assert "vmtop_cpu_seconds_total" not in m
    assert "vmtop_loop_lag_seconds" not in m
    assert "vmtop_tasks_created_total" not in m  # None until the agent counts them
    n = node(tasks_created_total=12, tasks_finished_total=9)
    m = scrape(obs(snapshot(n)))
    assert one(m["vmtop_tasks_created_total"]) == 12
    assert one(m["vmtop_tasks_finished_total"]) == 9


def test_groups_use_the_totals_and_leave_out_missing_lifetimes() -> None:
    m = scrape(obs(snapshot(groups=(group("handle", 100, live=4),))))
    labels = dict(coro="handle", location="app.py:1")
    assert one(m["vmtop_group_steps_total"], **labels) == 300
    assert one(m["vmtop_group_tasks_started_total"], **labels) == 100
    assert one(m["vmtop_group_tasks_finished_total"], **labels) == 96
    assert one(m["vmtop_group_tasks"], **labels) == 4
    assert one(m["vmtop_group_task_lifetime_seconds"], quantile="0.5", **labels) == 0.01
    assert not [k for k in m["vmtop_group_task_lifetime_seconds"] if ("quantile", "0.99") in k]


def test_group_labels_are_sticky_and_other_never_goes_down() -> None:
    budget = GroupBudget()
    first = tuple(group(f"g{i}", 1000 - i) for i in range(GROUPS_K + 5))
    m = scrape(obs(snapshot(groups=first), budget))
    coros = {dict(k)["coro"] for k in m["vmtop_group_steps_total"]}
    assert len(coros) == GROUPS_K + 1 and "other" in coros
    other_before = one(m["vmtop_group_steps_total"], coro="other", location="")
    assert other_before == sum(3 * (1000 - i) for i in range(GROUPS_K, GROUPS_K + 5))
    # A newcomer busier than all of them, and an unlabelled group the agent stops reporting:
    second = (*first[:GROUPS_K], first[GROUPS_K + 1], group("hot", 10_000))
    m = scrape(obs(snapshot(groups=second), budget))
    coros2 = {dict(k)["coro"] for k in m["vmtop_group_steps_total"]}
    assert coros2 == coros  # the first K keep their labels; "hot" adds up in "other"
    assert one(m["vmtop_group_steps_total"], coro="other", location="") == other_before + 30_000


def test_mailboxes_top_k_by_label_and_the_rest_in_other() -> None:
    rows = [
        ProcessRow(key=f"task:{i}", kind="task", id=str(i), name=f"Task-{i}", state="waiting",
                   mailbox=100 + i, coro="consume")
        for i in range(MAILBOXES_K + 3)
    ] + [ProcessRow(key="queue:1", kind="queue", id="q1", name="jobs", state="shared", mailbox=5000)]  # fmt: skip
    m = scrape(obs(snapshot(rows=rows)))
    samples = m["vmtop_mailbox_messages"]
    assert one(samples, kind="queue", name="jobs") == 5000
    # Tasks named by asyncio are labelled by their coroutine: one series, not one per task.
    top = sorted(range(MAILBOXES_K + 3), reverse=True)[: MAILBOXES_K - 1]
    assert one(samples, kind="task", name="consume") == sum(100 + i for i in top)
    assert one(samples, kind="", name="other") == sum(100 + i for i in range(4))
    assert len(samples) == 3


def test_the_dashboard_asks_only_for_metrics_the_exporter_serves() -> None:
    served = set(scrape(obs(snapshot(n=node(tasks_created_total=1, tasks_finished_total=1),
                                     groups=(group("g", 1),)))))  # fmt: skip
    asked = {name for q in dashboard_queries() for name in re.findall(r"vmtop_[a-z_]+", q)}
    assert asked, "no queries found in the dashboard"
    assert asked <= served, sorted(asked - served)


def test_program_names() -> None:
    assert program_name(("/srv/app.py", "--port", "1")) == "app"
    assert program_name(("/venv/lib/python3.11/site-packages/uvicorn/__main__.py",)) == "uvicorn"
    assert program_name(("-c", "--multiprocessing-fork")) == ""
    assert program_name(()) == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:9465", ("127.0.0.1", 9465)), (":0", ("0.0.0.0", 0)), ("[::1]:80", ("::1", 80))],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9465", "host:port", "host:70000"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="--listen"):
        parse_listen(text)
