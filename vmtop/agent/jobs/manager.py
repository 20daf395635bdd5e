"""The job manager: one per agent (its collector), owned by the agent's server.

It validates ``job_start``, refuses a second job of a kind while one runs (``busy``), runs each
job on its own agent thread, packs the result, answers ``job_status`` / ``job_cancel`` /
``job_result``, cancels the jobs of a client that left, and forgets a finished result at the
next job of its kind or after ``RESULT_TTL`` seconds.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from profilers import priority
from vmtop import job_payloads as payloads
from vmtop import protocol
from vmtop.agent.jobs import allocations, calls, gc_pressure, sample
from vmtop.agent.jobs.base import MAX_DURATION, RAW_ALLOCATIONS, Job, JobKind

if TYPE_CHECKING:
    from vmtop.agent.collector import Collector

log = logging.getLogger("vmtop.agent")

RESULT_TTL = 600.0

#: Every job kind by name: a new kind is a module with a ``KIND`` and one line here.
JOB_KINDS: dict[str, JobKind] = {
    kind.name: kind for kind in (sample.KIND, calls.KIND, allocations.KIND, gc_pressure.KIND)
}


class JobManager:
    """The jobs of one agent (one per collector): starts them on their own threads, answers
    the four job ops, cancels the jobs of a client that left, forgets old results."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.jobs: dict[int, Job] = {}
        self._seq = 0
        self._lock = threading.Lock()

    # -- ops ---------------------------------------------------------------------------------
    def handle(self, op: str, args: dict[str, Any], owner: int) -> dict[str, Any]:
        self._expire()
        if op == "job_start":
            return self.start(args, owner)
        job = self._job(args)
        if op == "job_status":
            wait = args.get("wait", 0)
            if not isinstance(wait, int | float) or isinstance(wait, bool) or not 0 <= wait <= 2:
                raise protocol.ProtocolError("bad_request", "'wait' must be 0 to 2 seconds")
            if wait:
                with priority.paused():  # not the main thread's work: it runs meanwhile
                    job.done.wait(wait)  # long poll: answers at once when the job ends
            return job.status()
        if op == "job_cancel":
            job.cancel()
            return job.status()
        if op == "job_result":
            return self.result(job, args)
        raise protocol.ProtocolError("unknown_op", f"unknown op {op!r}")

    def start(self, args: dict[str, Any], owner: int) -> dict[str, Any]:
        kind = args.get("kind")
        if not isinstance(kind, str) or kind not in JOB_KINDS:
            raise protocol.ProtocolError(
                "bad_request", f"'kind' must be one of {', '.join(JOB_KINDS)}"
            )
        job_kind = JOB_KINDS[kind]
        duration = args.get("duration")
        if (
            not isinstance(duration, int | float)
            or isinstance(duration, bool)
            or not 0 < duration <= MAX_DURATION
        ):
            raise protocol.ProtocolError(
                "bad_request", f"'duration' must be a number of seconds in (0, {MAX_DURATION:g}]"
            )
        opts = {k: v for k, v in args.items() if k not in ("kind", "duration")}
        unknown = sorted(set(opts) - job_kind.options)
        if unknown:
            allowed = ", ".join(sorted(job_kind.options)) or "none"
            raise protocol.ProtocolError(
                "bad_request", f"unknown {kind} option {unknown[0]!r} (options: {allowed})"
            )
        with self._lock:
            for other in self.jobs.values():
                if other.kind == kind and other.state in ("starting", "running", "stopping"):
                    raise protocol.ProtocolError(
                        "busy", f"a {kind} job (id {other.id}) is already running in this target"
                    )
            # One finished result per kind is kept: a new job drops the previous one.
            for key in [k for k, j in self.jobs.items() if j.kind == kind]:
                del self.jobs[key]
            self._seq += 1
            job = Job(self._seq, kind, float(duration), opts, owner)
            self.jobs[job.id] = job
        try:
            job_kind.prepare(job, self.collector)  # validate options, refuse early, here
        except BaseException:
            with self._lock:
                self.jobs.pop(job.id, None)
            raise
        thread = threading.Thread(
            target=self._run, args=(job, job_kind), name=f"vmtop-job-{kind}-{job.id}", daemon=True
        )
        thread._vmtop_agent = True  # type: ignore[attr-defined]
        job.thread = thread
        thread.start()
        return {"id": job.id, "kind": kind, "duration": job.duration}

    def result(self, job: Job, args: dict[str, Any]) -> dict[str, Any]:
        if job.state not in ("done", "failed"):
            raise protocol.ProtocolError("busy", f"job {job.id} is still {job.state}")
        if job.thread is not None:
            with priority.paused():
                job.thread.join(2.0)  # the thread is on its last line: the count is back after this
        if job.state == "failed":
            raise protocol.ProtocolError("internal", f"{job.kind} job failed: {job.error}")
        chunk = args.get("chunk", 0)
        count = payloads.chunks(job.payload)
        if not isinstance(chunk, int) or isinstance(chunk, bool) or not 0 <= chunk < count:
            raise protocol.ProtocolError(
                "bad_request", f"'chunk' must be an integer in [0, {count})"
            )
        size = payloads.CHUNK_BYTES
        data = job.payload[chunk * size : (chunk + 1) * size]
        return {
            "id": job.id,
            "kind": job.kind,
            "meta": job.meta,
            "status": job.status(),
            "chunk": chunk,
            "chunks": count,
            "size": len(job.payload),
            "data": base64.b64encode(data).decode("ascii"),
        }

    def client_left(self, owner: int) -> None:
        """Cancel the jobs of a client that disconnected (their results would be orphans)."""
        with self._lock:
            jobs = [j for j in self.jobs.values() if j.owner == owner]
        for job in jobs:
            job.cancel()

    # -- internals ---------------------------------------------------------------------------
    def _job(self, args: dict[str, Any]) -> Job:
        job_id = args.get("id")
        if not isinstance(job_id, int) or isinstance(job_id, bool):
            raise protocol.ProtocolError("bad_request", "'id' must be a job id (integer)")
        job = self.jobs.get(job_id)
        if job is None:
            raise protocol.ProtocolError("not_found", f"no job {job_id} (finished results expire)")
        return job

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            for key, job in list(self.jobs.items()):
                if job.finished is not None and now - job.finished > RESULT_TTL:
                    del self.jobs[key]

    def _run(self, job: Job, kind: JobKind) -> None:
        try:
            meta, data = kind.run(job, self.collector)
            job.state = "stopping"  # measured and restored; the result is being packed
            meta["duration"] = meta.get("duration", job.elapsed())
            meta["stopped_early"] = job.stopped_early
            meta["restore_notes"] = job.restore_notes
            with RAW_ALLOCATIONS:
                job.payload = payloads.pack(data if data is not None else {})
            job.meta = meta
            job.state = "done"
        except Exception as exc:  # never into the program: reported through job_status
            log.debug("vmtop agent: %s job failed", job.kind, exc_info=True)
            job.error = f"{type(exc).__name__}: {exc}"[:300]
            job.state = "failed"
        finally:
            job.finished = time.monotonic()
            job.done.set()
