"""On-demand profiling jobs in the target: sampled stacks, calls, allocations, GC for N seconds.

Ops (see :mod:`vmtop.protocol`)::

    job_start  {"kind": "sample"|"calls"|"allocations"|"gc", "duration": S, ...options}
               -> {"id", "kind", "duration"}
    job_status {"id", "wait": S} -> {"state", "elapsed", "duration", "progress", "detail", ...}
               (``wait`` up to 2 s: answer as soon as the job ends, or after S seconds)
    job_cancel {"id"} -> status (the job ends early; its result is still made)
    job_result {"id", "chunk": i} -> {"meta", "chunk", "chunks", "size", "data": base64}

Rules: one job of a kind at a time (a second one is refused as ``busy``); each job runs on its
own agent thread and leaves the target as it found it (profile hook removed, tracemalloc
stopped unless it was on before, the GIL switch interval restored, its thread gone). A job
whose client disconnects is cancelled. A finished result is kept until the next job of its
kind or ``RESULT_TTL`` seconds, whichever comes first: memory stays bounded.

The package: :mod:`~vmtop.agent.jobs.manager` (:class:`JobManager`, one per agent, owned by its
server: ``Server.jobs``), :mod:`~vmtop.agent.jobs.base` (:class:`Job`, the :class:`JobKind` each kind module
declares, what is the agent's own code) and one module per kind: ``sample``, ``calls``,
``allocations``, ``gc_pressure``. A new kind is a module with a ``KIND`` and a line in
``manager.JOB_KINDS``.
"""

from __future__ import annotations

from vmtop.agent.jobs.base import AGENT_PREFIXES, Job, JobKind, agent_file
from vmtop.agent.jobs.manager import JOB_KINDS, JobManager

JOB_OPS = ("job_start", "job_status", "job_cancel", "job_result")

__all__ = ["AGENT_PREFIXES", "JOB_KINDS", "JOB_OPS", "Job", "JobKind", "JobManager", "agent_file"]
