"""The client side of profiling jobs: ask a live target for a profile and get a report object.

The reports are the same types the REPL returns (``vmtop.profile`` -> :class:`SampledProfile`
or :class:`CallsProfile`, ``vmtop.allocations`` -> :class:`AllocationReport`,
``vmtop.gc_pressure`` -> :class:`GCReport`), so ``save()`` and every exporter work the same::

    with AgentClient(pid) as client:
        p = jobs_client.profile(client, 5, by_task=True)   # 5 s of sampled stacks, tasks as roots
        p.save("live.svg")
        c = jobs_client.calls(client, 5)                   # cProfile on the loop thread for 5 s
        m = jobs_client.allocations(client, 10, depth=16)  # tracemalloc for 10 s, analysed here
        g = jobs_client.gc(client, 10)

Heavy work (aggregating a large tracemalloc snapshot) happens in this process, not the target.
"""

from __future__ import annotations

import base64
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vmtop import job_payloads as payloads

if TYPE_CHECKING:
    from profilers.alloc_report import AllocationReport
    from profilers.calls_report import CallsProfile
    from profilers.gc_report import GCReport
    from profilers.profile_report import SampledProfile
    from profilers.thread_sampler import SampleSet
    from vmtop.client import AgentClient

Progress = Callable[[dict[str, Any]], None]
POLL = 0.25  # seconds between progress updates


class JobError(Exception):
    """A job could not run or finish; the message is fit for a user."""


@dataclass(slots=True)
class JobResult:
    """What a finished job returned: ``meta`` (small figures) and the decoded ``payload``."""

    id: int
    kind: str
    meta: dict[str, Any]
    payload: dict[str, Any]
    status: dict[str, Any]

    @property
    def stopped_early(self) -> bool:
        return bool(self.meta.get("stopped_early"))


# -- the four ops ----------------------------------------------------------------------------------
def start_job(client: AgentClient, kind: str, duration: float, **opts: Any) -> dict[str, Any]:
    _check_agent(client)
    return dict(client.request("job_start", kind=kind, duration=duration, **opts))


def job_status(client: AgentClient, job_id: int, wait: float = 0.0) -> dict[str, Any]:
    return dict(client.request("job_status", id=job_id, wait=wait))


def cancel_job(client: AgentClient, job_id: int) -> dict[str, Any]:
    return dict(client.request("job_cancel", id=job_id))


def job_result(client: AgentClient, job_id: int) -> JobResult:
    """Fetch every chunk of a finished job's result and decode it."""
    first = client.request("job_result", id=job_id, chunk=0)
    parts = [base64.b64decode(first["data"])]
    for chunk in range(1, int(first["chunks"])):
        reply = client.request("job_result", id=job_id, chunk=chunk)
        parts.append(base64.b64decode(reply["data"]))
    data = b"".join(parts)
    if len(data) != int(first["size"]):
        raise JobError(f"job {job_id}: got {len(data):,} of {int(first['size']):,} bytes")
    return JobResult(
        id=int(first["id"]),
        kind=str(first["kind"]),
        meta=dict(first["meta"]),
        payload=payloads.unpack(data),
        status=dict(first["status"]),
    )


def run_job(
    client: AgentClient,
    kind: str,
    duration: float,
    progress: Progress | None = None,
    **opts: Any,
) -> JobResult:
    """Start a job, wait for it (``progress(status)`` after each poll) and return its result.

    Ctrl-C (KeyboardInterrupt) while waiting cancels the job and still returns what it
    measured; a second Ctrl-C while the job winds down raises.
    """
    started, interrupted = _start_deferring_ctrl_c(client, kind, duration, **opts)
    job_id = int(started["id"])
    if interrupted:  # Ctrl-C arrived while the job was being started
        cancel_job(client, job_id)
    while True:
        try:
            status = job_status(client, job_id, wait=POLL)
            if progress is not None:
                progress(status)
        except KeyboardInterrupt:
            if interrupted:
                raise
            interrupted = True
            cancel_job(client, job_id)
            continue
        if status["state"] == "failed":
            raise JobError(f"the {kind} job failed in the target: {status.get('error')}")
        if status["state"] == "done":
            return job_result(client, job_id)


def _start_deferring_ctrl_c(
    client: AgentClient, kind: str, duration: float, **opts: Any
) -> tuple[dict[str, Any], bool]:
    """Start a job with Ctrl-C held back until the agent's answer (with the job id) is read,
    so an early Ctrl-C still cancels the job and reports instead of abandoning it."""
    if threading.current_thread() is not threading.main_thread():
        return start_job(client, kind, duration, **opts), False
    hits: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: hits.append(signum))
    try:
        started = start_job(client, kind, duration, **opts)
    finally:
        signal.signal(signal.SIGINT, previous)
    return started, bool(hits)


def _check_agent(client: AgentClient) -> None:
    ops = getattr(client, "agent_ops", None)
    if ops is not None and "job_start" not in ops:
        raise JobError(
            f"the agent in pid {client.pid} (vmtop {client.agent_version}) has no profiling "
            "jobs: restart the target with this vmtop version"
        )


# -- reports -----------------------------------------------------------------------------------------
def sample_set(
    client: AgentClient,
    duration: float,
    rate: float = 100.0,
    progress: Progress | None = None,
    **opts: Any,
) -> tuple[SampleSet, JobResult]:
    """Sampled stacks of every thread for ``duration`` seconds, tagged with thread and task."""
    from profilers.thread_sampler import SampleSet

    result = run_job(client, "sample", duration, progress, rate=rate, **opts)
    return SampleSet.from_dict(result.payload), result


def profile(
    client: AgentClient,
    duration: float,
    *,
    rate: float = 100.0,
    task: str | None = None,
    thread: str | None = None,
    by_task: bool = False,
    idle: bool = False,
    name: str | None = None,
    progress: Progress | None = None,
) -> SampledProfile:
    """A sampled profile of the live target as a :class:`SampledProfile` (unit seconds).

    ``task``: only samples taken while a task of that name ran; ``thread``: only that thread;
    ``by_task``: task names as the root frames of the flamegraph; ``idle``: keep samples of
    threads that were idle (blocked, sleeping) — a wall-clock view instead of a CPU one.
    """
    from profilers.profile_report import SampledProfile

    samples, result = sample_set(client, duration, rate, progress)
    if thread is not None and thread not in samples.threads():
        seen = ", ".join(samples.threads()) or "none"
        raise JobError(f"no thread named {thread!r} in pid {client.pid} (threads: {seen})")
    label = name or _profile_name(client.pid, task, thread)
    model = samples.model(by_task=by_task, task=task, thread=thread, idle=idle, name=label)
    report = SampledProfile(
        model,
        duration=samples.duration,
        samples=samples.count(task=task, thread=thread, idle=idle),
        interval=1.0 / samples.rate,
        name=label,
    )
    report.sample_set = samples
    report.achieved_rate = samples.achieved_rate
    report.stopped_early = result.stopped_early
    return report


def _profile_name(pid: int, task: str | None, thread: str | None) -> str:
    if task is not None:
        return f"pid {pid}, task {task}"
    if thread is not None:
        return f"pid {pid}, thread {thread}"
    return f"pid {pid}"


def calls(
    client: AgentClient,
    duration: float,
    *,
    thread: str | None = None,
    name: str | None = None,
    progress: Progress | None = None,
) -> CallsProfile:
    """cProfile in the target for ``duration`` seconds, as a :class:`CallsProfile`."""
    from profilers.calls_report import CallsProfile

    opts = {} if thread is None else {"thread": thread}
    result = run_job(client, "calls", duration, progress, **opts)
    stats = payloads.decode_pstats(result.payload)
    scope = result.meta.get("scope", "")
    report = CallsProfile(
        stats, float(result.meta["duration"]), name=name or f"pid {client.pid} ({scope})"
    )
    report.scope = scope
    report.stopped_early = result.stopped_early
    return report


def allocations(
    client: AgentClient,
    duration: float,
    *,
    depth: int | None = None,
    growth: bool = False,
    name: str | None = None,
    progress: Progress | None = None,
) -> AllocationReport:
    """tracemalloc in the target for ``duration`` seconds (``depth`` frames per trace), the
    end snapshot (and with ``growth`` the start one) shipped here and analysed in this process.
    """
    opts: dict[str, Any] = {"growth": growth}
    if depth is not None:
        opts["depth"] = depth
    result = run_job(client, "allocations", duration, progress, **opts)
    return allocation_report(result, name or f"pid {client.pid}")


def allocation_report(result: JobResult, name: str) -> AllocationReport:
    """The :class:`AllocationReport` of a finished ``allocations`` job (analysis is lazy)."""
    import tracemalloc

    from profilers.alloc_analysis import OWN_FILES
    from profilers.alloc_report import AllocationReport

    meta = result.meta
    after = tracemalloc.Snapshot(*payloads.decode_traces(result.payload["end"]))
    before = None
    if "start" in result.payload:
        before = tracemalloc.Snapshot(*payloads.decode_traces(result.payload["start"]))
    # The target's agent code (its paths: the target may run another environment), not the
    # whole vmtop package as for a REPL report: a program under vmtop/ (the demo) is a program.
    exclude = tuple(map(str, meta.get("agent_dirs", ()))) or OWN_FILES
    report = AllocationReport(
        after,
        before,
        name=name,
        duration=float(meta["duration"]),
        start_traced=_optional_int(meta.get("start_traced")),
        end_traced=_optional_int(meta.get("end_traced")),
        peak=_optional_int(meta.get("peak")),
        was_tracing=bool(meta.get("was_tracing")),
        requested_nframe=_optional_int(meta.get("requested_depth")),
        exclude=exclude,
    )
    report.snapshot_pause = float(meta.get("snapshot_pause", 0.0))
    report.stopped_early = result.stopped_early
    return report


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def gc(
    client: AgentClient,
    duration: float,
    *,
    name: str | None = None,
    progress: Progress | None = None,
) -> GCReport:
    """The target's collections, pauses and collected objects over ``duration`` seconds."""
    from profilers.gc_report import GCReport
    from profilers.gc_stats import GCStats

    result = run_job(client, "gc", duration, progress)
    stats = GCStats.from_dict(result.payload["stats"])
    report = GCReport(
        stats,
        name=name or f"pid {client.pid}",
        enabled_at_start=bool(result.meta.get("enabled_at_start", True)),
    )
    report.stopped_early = result.stopped_early
    return report
