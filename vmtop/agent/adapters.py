"""Runtime adapters: rows for runtimes beside asyncio tasks and plain threads (Pykka, Trio).

An adapter turns one runtime's own objects into :class:`~vmtop.records.ProcessRow`s (and,
for a runtime with its own run loop, :class:`~vmtop.records.LoopStats` for the node header).
It is discovered only when its runtime's module is in ``sys.modules``: vmtop never imports
pykka or trio itself, and a program that does not use them pays nothing. The adapters of a
collector are turned on at the first client's hello (and, for a runtime imported later, at
the next snapshot) and off when the last client leaves (``Collector.detach``).

A new runtime is a module in ``vmtop/agent/`` with a class that follows
:class:`RuntimeAdapter`, and one line in ``REGISTRY``. Its rows use the existing kinds
(``task``, ``thread``, ``queue``), so filters, sorting and ``--kinds`` work unchanged; their
``runtime`` field names the adapter. An adapter whose process is a thread (an actor = a
thread + an inbox) *claims* that thread's ident in :attr:`AdapterRows.claimed`, and
``snapshot._thread_rows`` skips claimed threads: one row per process, the adapter's.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from vmtop.records import LoopStats, ProcessRow

if TYPE_CHECKING:
    from vmtop.agent.collector import Collector

log = logging.getLogger("vmtop.agent")


@dataclass
class AdapterRows:
    """What one adapter adds to a snapshot."""

    rows: list[ProcessRow] = field(default_factory=list)
    matched: int = 0  # rows that matched the request before the top-N cut
    loops: list[LoopStats] = field(default_factory=list)  # run loops for the node header
    notes: list[str] = field(default_factory=list)
    claimed: set[int] = field(default_factory=set)  # thread idents shown as this runtime's rows
    loop_time: float = 0.0  # seconds spent on the runtime's own threads (what the target paid)


class RuntimeAdapter(Protocol):
    """One runtime. ``module`` in ``sys.modules`` turns it on; every method runs on the
    agent's client thread and must never raise into the program or block it for long."""

    name: str  # "pykka", "trio": ProcessRow.runtime of its rows
    module: str  # the runtime's top-level module

    def attach(self) -> None:
        """The first client is here (or the runtime was just imported): install hooks."""

    def detach(self) -> None:
        """The last client left: remove every hook, forget everything."""

    def snapshot(self, collector: Collector, state: dict[str, Any], req: Any) -> AdapterRows:
        """Rows for one client; ``state`` is that client's memory between its snapshots
        (previous counters for per-interval figures); ``req`` a ``SnapshotRequest``."""
        ...

    def detail(self, collector: Collector, key: str) -> dict[str, Any] | None:
        """The detail view of one of its rows (None: not one of its keys)."""
        ...


def _registry() -> dict[str, Any]:
    # Imported with the agent: the adapter modules import nothing of their runtime at load.
    from vmtop.agent.pykka_actors import PykkaAdapter
    from vmtop.agent.trio_tasks import TrioAdapter

    return {"pykka": PykkaAdapter, "trio": TrioAdapter}


REGISTRY: dict[str, Any] = _registry()  # adapter name -> its class


class Adapters:
    """The adapters of one collector: on while a client is attached and their runtime is
    imported, off at the last detach."""

    def __init__(self) -> None:
        self._active: dict[str, RuntimeAdapter] = {}
        self._lock = threading.Lock()
        self.claimed: frozenset[int] = frozenset()  # read by snapshot._thread_rows

    def activate(self) -> list[RuntimeAdapter]:
        """Turn on the adapters whose runtime is imported now; the active ones."""
        with self._lock:
            for name, cls in REGISTRY.items():
                if name in self._active or cls.module not in sys.modules:
                    continue
                adapter: RuntimeAdapter = cls()
                try:
                    adapter.attach()
                except Exception:
                    log.debug("vmtop agent: %s adapter not attached", name, exc_info=True)
                    continue
                self._active[name] = adapter
            return list(self._active.values())

    def detach(self) -> None:
        with self._lock:
            adapters, self._active = list(self._active.values()), {}
            self.claimed = frozenset()
        for adapter in adapters:
            try:
                adapter.detach()
            except Exception:
                log.debug("vmtop agent: %s adapter detach failed", adapter.name, exc_info=True)

    def snapshot(self, collector: Collector, session: Any, req: Any) -> AdapterRows:
        """Every active adapter's rows for one client (``session.adapters``: that client's
        state, by adapter name; it starts with the threads' CPU clocks and queue gets at the
        client's hello, the start of its first interval)."""
        out = AdapterRows()
        for adapter in self.activate():
            state = session.adapters.get(adapter.name)
            if state is None:
                state = session.adapters[adapter.name] = {
                    "threads_cpu": session.hello_threads,
                    "threads_gets": dict(getattr(session, "prev_thread_gets", {})),
                }
            try:
                got = adapter.snapshot(collector, state, req)
            except Exception as exc:  # a runtime's surprise must not break the snapshot
                log.debug("vmtop agent: %s adapter failed", adapter.name, exc_info=True)
                out.notes.append(f"{adapter.name}: rows not read ({type(exc).__name__})")
                continue
            out.rows += got.rows
            out.matched += got.matched
            out.loops += got.loops
            out.notes += got.notes
            out.claimed |= got.claimed
            out.loop_time += got.loop_time
        self.claimed = frozenset(out.claimed)
        return out

    def detail(self, collector: Collector, key: str) -> dict[str, Any] | None:
        with self._lock:
            adapters = list(self._active.values())
        for adapter in adapters:
            found = adapter.detail(collector, key)
            if found is not None:
                return found
        return None
