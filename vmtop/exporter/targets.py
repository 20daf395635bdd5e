"""Which agents a scrape reads, and one connection to each.

Targets are the PIDs given (plus, with ``--subprocesses``, their descendants that have an
agent), or with ``--all`` every process of this user whose agent listens, in a container too
(:func:`vmtop.discovery.discover`: one pass over ``/proc``, each agent under the pid of the
process that holds its socket, in our numbering). Each target keeps one connection
while it lives: its hooks stay installed, so counters run from the exporter's attach. A
target that exits drops out of the scrape; a PID without an agent, or one that exits, is
reported once (``report``), not at every scrape.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from vmtop.client import AgentClient, ClientError, NoAgent, TargetGone, pid_exists
from vmtop.discovery import listening
from vmtop.exporter.budget import GroupBudget
from vmtop.exporter.families import Observation
from vmtop.fleet.tree import descendants, parent_pid
from vmtop.records import Snapshot

TIMEOUT = 5.0  # per target and scrape; a blocked loop is answered for after 1 s
MAX_PARALLEL = 8
GROUPS_FETCHED = 200  # groups asked for per snapshot: the budget picks labels from these
ROWS_FETCHED = 20  # rows asked for (by mailbox): the 10 longest labelled, the next in "other"


@dataclass
class Target:
    pid: int
    client: AgentClient
    budget: GroupBudget = field(default_factory=GroupBudget)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> Snapshot:
        with self.lock:  # two scrapes at once take turns on one connection
            return self.client.snapshot(
                sort="mailbox", limit=ROWS_FETCHED, memory=False, groups=GROUPS_FETCHED
            )


class Targets:
    def __init__(
        self,
        pids: list[int],
        all_agents: bool = False,
        subprocesses: bool = False,
        report: Callable[[str], None] = print,
        timeout: float = TIMEOUT,
    ) -> None:
        self.pids = list(pids)
        self.all_agents = all_agents
        self.subprocesses = subprocesses
        self.report = report
        self.timeout = timeout
        self.targets: dict[int, Target] = {}
        self._said: set[tuple[int, str]] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(MAX_PARALLEL, thread_name_prefix="vmtop-exporter")

    def _once(self, pid: int, what: str, message: str) -> None:
        if (pid, what) not in self._said:
            self._said.add((pid, what))
            self.report(message)

    def wanted(self) -> list[int]:
        """The PIDs to read now."""
        if self.all_agents:
            return [p for p in listening() if p != os.getpid()]
        alive = []
        for pid in self.pids:
            if pid_exists(pid):
                alive.append(pid)
            else:
                self._once(pid, "exited", f"pid {pid} exited: no longer scraped")
        self.pids = alive
        if self.subprocesses:  # the workers with an agent: no connection tried to the others
            workers = listening({d for p in alive for d in descendants(p)} - set(alive))
            return sorted({*alive, *workers})
        return alive

    def _connected(self, pids: list[int]) -> list[Target]:
        for pid in set(self.targets) - set(pids):
            self._drop(pid)
        for pid in pids:
            if pid in self.targets:
                continue
            try:
                client = AgentClient(pid, self.timeout).connect()
            except NoAgent as exc:
                if pid in self.pids or not self.subprocesses:  # a worker without one: not news
                    self._once(pid, "no-agent", str(exc))
                continue
            except ClientError as exc:
                if pid_exists(pid):
                    self._once(pid, "error", f"pid {pid}: {exc}")
                continue
            self.targets[pid] = Target(pid, client)
        return [self.targets[p] for p in pids if p in self.targets]

    def observe(self) -> list[Observation]:
        """One snapshot of every target (in parallel); the ones that fail drop out."""
        with self._lock:
            targets = self._connected(self.wanted())
        futures = [(t, self._pool.submit(t.snapshot)) for t in targets]
        observed: list[tuple[Target, Snapshot]] = []
        for target, future in futures:
            try:
                observed.append((target, future.result()))
            except ClientError as exc:
                with self._lock:
                    self._drop(target.pid)
                if isinstance(exc, TargetGone) or not pid_exists(target.pid):
                    self._once(target.pid, "exited", f"pid {target.pid} exited: no longer scraped")
                else:
                    self._once(target.pid, "error", f"pid {target.pid}: {exc}")
        with self._lock:  # a pid that is gone may come back as a new process: say it again
            self._said = {
                (pid, what) for pid, what in self._said if pid in self.pids or pid_exists(pid)
            }
        names = {t.pid: program_name(s.node.argv) for t, s in observed}
        return [
            Observation(
                pid=t.pid,
                program=inherited_name(t.pid, names),
                snapshot=s,
                cpu_seconds=cpu_seconds(t.pid),
                budget=t.budget,
            )
            for t, s in observed
        ]

    def _drop(self, pid: int) -> None:
        target = self.targets.pop(pid, None)
        if target is not None:
            with contextlib.suppress(Exception):
                target.client.close()

    def close(self) -> None:
        with self._lock:
            for pid in list(self.targets):
                self._drop(pid)
        self._pool.shutdown(wait=False, cancel_futures=True)


def program_name(argv: tuple[str, ...]) -> str:
    """``app`` for ``app.py``, ``uvicorn`` for ``-m uvicorn`` (argv[0] is its __main__.py);
    "" when argv says nothing (``python -c``)."""
    if not argv or not argv[0] or argv[0].startswith("-"):
        return ""
    path = argv[0].rstrip("/")
    head, _, name = path.rpartition("/")
    if name in ("__main__.py", "__init__.py") and head:
        name = head.rpartition("/")[2]
    return name.removesuffix(".py")


def inherited_name(pid: int, names: dict[int, str]) -> str:
    """A target's own program name, else its nearest target ancestor's, else "python"."""
    for _ in range(16):
        if names.get(pid):
            return names[pid]
        pid = parent_pid(pid)
        if pid <= 1:
            break
    return "python"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (``/proc/PID/stat``), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
