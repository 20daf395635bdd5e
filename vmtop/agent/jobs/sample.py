"""``sample`` jobs: every thread's stacks, tagged with the task that ran, N times a second.

The sampler (:class:`profilers.thread_sampler.ThreadSampler`) runs on the job's own thread,
which it skips; the client turns the sample set into a profile (``vmtop.jobs_client.profile``).
Options: ``rate``, ``switch_interval`` and ``main_yields`` (default true: each tick parks the
main thread at an eval-breaker check, docs/live-profiles.md; false only to compare).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from profilers import priority
from vmtop import protocol
from vmtop.agent.jobs.base import AGENT_CODE_DIR, Job, JobKind, Result

if TYPE_CHECKING:
    from vmtop.agent.collector import Collector


def prepare(job: Job, collector: Collector) -> None:
    from profilers.thread_sampler import MAX_RATE, ThreadSampler

    rate = job.opts.get("rate", 100.0)
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 < rate <= MAX_RATE:
        raise protocol.ProtocolError(
            "bad_request", f"'rate' must be in (0, {MAX_RATE:g}] samples/s"
        )
    switch = job.opts.get("switch_interval", "default")
    kwargs: dict[str, Any] = {}
    if switch != "default":
        if switch is not None and (not isinstance(switch, int | float) or not 0 < switch <= 1):
            raise protocol.ProtocolError(
                "bad_request", "'switch_interval' must be in (0, 1] s or null"
            )
        kwargs["switch_interval"] = switch
    main_yields = job.opts.get("main_yields", True)
    if not isinstance(main_yields, bool):
        raise protocol.ProtocolError("bad_request", "'main_yields' must be true or false")
    kwargs["main_yields"] = main_yields
    # The agent's hooks that wrap the program's calls are left out of its stacks, and so is
    # priority.py, where a loop's callback answers an agent's wait (a sample can find the
    # loop parked there while the agent thread it woke holds the GIL).
    hide = (AGENT_CODE_DIR, priority.__file__)
    sampler = ThreadSampler(float(rate), hide_prefixes=hide, **kwargs)
    job.opts["_sampler"] = sampler
    job.on_cancel.append(sampler.stop)

    def detail() -> dict[str, Any]:
        result = sampler.result
        elapsed = sampler.elapsed
        return {"ticks": result.ticks, "rate": result.ticks / elapsed if elapsed else 0.0}

    job.detail = detail


def run(job: Job, collector: Collector) -> Result:
    sampler = job.opts.pop("_sampler")
    job.measuring()
    result = sampler.run(job.duration)  # on this (job) thread, which the sampler skips
    meta = {
        "rate": result.rate,
        "achieved_rate": result.achieved_rate,
        "ticks": result.ticks,
        "duration": result.duration,
        "samples": result.samples,
        "switch_interval": result.switch_interval,
        "sampler_cpu": result.cpu_time,
        "main_yields": result.main_yields,
    }
    return meta, result.to_dict()


KIND = JobKind("sample", frozenset(("rate", "switch_interval", "main_yields")), prepare, run)
