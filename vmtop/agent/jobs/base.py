"""What every job kind shares: the :class:`Job` record, the :class:`JobKind` a kind module
exports, and what counts as the agent's own code (left out of every report).
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vmtop import protocol

if TYPE_CHECKING:
    from vmtop.agent.collector import Collector

MAX_DURATION = 3600.0

_VMTOP_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep
_PROFILERS_DIR = os.path.join(os.path.dirname(_VMTOP_DIR.rstrip(os.sep)), "profilers") + os.sep
AGENT_CODE_DIR = os.path.join(_VMTOP_DIR, "agent") + os.sep
# Agent code that wraps the program's own calls on the program's threads.
WRAPPER_FILES = frozenset(
    os.path.join(_VMTOP_DIR, "agent", name) for name in ("step_hooks.py", "mailbox.py")
)

# The code that runs on the agent's threads or as its hooks (vmtop/demo and the like are
# programs: they stay in reports), and the launcher of `vmtop run` (at the root of stacks).
AGENT_PREFIXES = (
    AGENT_CODE_DIR,
    _PROFILERS_DIR,
    os.path.join(_VMTOP_DIR, "cli") + os.sep,
    *(
        os.path.join(_VMTOP_DIR, name)
        for name in (
            "__init__.py",
            "__main__.py",
            "_version.py",
            "protocol.py",
            "records.py",
            "job_payloads.py",
            "paths.py",
        )
    ),
    tracemalloc.__file__,
)


def agent_file(path: str) -> bool:
    """True for the agent's own code (its frames and allocations are not the program's)."""
    return path.startswith(AGENT_PREFIXES)


# tracemalloc.stop() races with a thread that is inside tracemalloc's raw-memory hook without
# the GIL (CPython gh-128679: a crash, fixed in 3.12.9 and 3.13.2, never in 3.11). zlib
# allocates that way while it compresses with the GIL released, so the agent never compresses
# a payload while it starts or stops tracemalloc. (The program's own threads can still race;
# docs/live-profiles.md says so.)
RAW_ALLOCATIONS = threading.Lock()


class Refused(protocol.ProtocolError):
    def __init__(self, message: str) -> None:
        super().__init__("refused", message)


#: What a job's body returns: ``meta`` (small figures, sent as JSON) and the payload data
#: (packed by :func:`vmtop.job_payloads.pack`).
Result = tuple[dict[str, Any], Any]


@dataclass(frozen=True, slots=True)
class JobKind:
    """One kind of job, as its module declares it.

    ``prepare(job, collector)`` runs on the client's thread when the job starts: it checks the
    options and refuses early (a ``ProtocolError``), before any thread exists. ``run(job,
    collector)`` runs on the job's own thread, measures until ``job.wait()`` returns, restores
    the target and returns the result.
    """

    name: str
    options: frozenset[str]
    prepare: Callable[[Job, Collector], None]
    run: Callable[[Job, Collector], Result]


class Job:
    def __init__(self, job_id: int, kind: str, duration: float, opts: dict[str, Any], owner: int):
        self.id = job_id
        self.kind = kind
        self.duration = duration
        self.opts = opts
        self.owner = owner
        self.state = "starting"  # -> running -> (stopping) -> done | failed
        self.error: str | None = None
        self.stopped_early = False
        self.started = time.monotonic()
        self.finished: float | None = None
        self.stop = threading.Event()
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        self.meta: dict[str, Any] = {}
        self.payload = b""
        self.detail: Callable[[], dict[str, Any]] = dict
        self.on_cancel: list[Callable[[], None]] = []
        self.restore_notes: list[str] = []

    def cancel(self) -> None:
        """End the job early (its result is still made from what was measured)."""
        if self.state not in ("starting", "running"):
            return
        self.stopped_early = True
        self.stop.set()
        for callback in self.on_cancel:
            callback()

    def measuring(self) -> None:
        """The measurement has begun (hooks in place): state "running", clock from now."""
        self.started = time.monotonic()
        self.state = "running"

    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.monotonic()
        return end - self.started

    def wait(self) -> None:
        """Sleep until the job's duration is up or it is cancelled."""
        self.stop.wait(max(0.0, self.duration - self.elapsed()))

    def status(self) -> dict[str, Any]:
        elapsed = self.elapsed()
        try:
            detail = self.detail()
        except Exception:
            detail = {}
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "elapsed": elapsed,
            "duration": self.duration,
            "progress": min(1.0, elapsed / self.duration) if self.duration else 1.0,
            "stopped_early": self.stopped_early,
            "error": self.error,
            "detail": detail,
        }
