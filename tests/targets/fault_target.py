"""A target for the fault, fuzz, slow-client and hygiene tests, driven by lines on stdin.

It measures its own event-loop lag with a ``call_later`` probe (no vmtop code involved), runs a
deterministic queue workload whose result the tests know in advance, and reports the state a
leak would show in (threads, fds, RSS, every hook vmtop installs). Prints one JSON object per
line; the first is ``{"ready": true, ...}``.

Options: ``--tasks N`` idle named tasks (makes snapshots big), ``--eager`` use
``asyncio.eager_task_factory`` (3.12+).

Commands:
  state              {"state": {...}}
  lag_reset          forget lag samples          -> {"lag_reset": true}
  lag                lag since the last reset    -> {"lag": {"n", "p50", "p99", "max"}}
  check N            push 0..N-1 through the worker's queue -> {"check": digest}
  block S            time.sleep(S) on the loop   -> {"blocking": S} first, {"blocked": S} after
  fork S             fork a child that reports on itself, starts its own agent and lives S s
  close_loop S       end asyncio.run (the loop is closed), then live S s without a loop
  exit N, quit N     return N from main (asyncio.run ends, the process exits with N)
"""

import asyncio
import gc
import json
import os
import queue
import signal
import stat
import sys
import threading
import time
import warnings
from typing import Any

from stdin_lines import read_lines

import vmtop.agent

ORIGINAL_RUN = asyncio.events.Handle._run
ORIGINAL_GET_NOWAIT = asyncio.Queue.get_nowait
ORIGINAL_TQ_GET = queue.Queue.get
PROBE_INTERVAL = 0.005


def say(**obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def digest(n: int) -> int:
    """What ``check n`` must print; the tests compute the same function."""
    h = 17
    for i in range(n):
        h = (h * 31 + i * i) % (2**61 - 1)
    return h


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class LagProbe:
    """call_later every 5 ms; lag = how late the callback ran."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.samples: list[float] = []
        self.expected = 0.0

    def arm(self) -> None:
        self.expected = self.loop.time() + PROBE_INTERVAL
        self.loop.call_later(PROBE_INTERVAL, self.tick)

    def tick(self) -> None:
        self.samples.append(max(0.0, self.loop.time() - self.expected))
        if len(self.samples) > 200_000:
            del self.samples[:100_000]
        self.arm()

    def figures(self) -> dict[str, float | None]:
        lags = sorted(self.samples)
        n = len(lags)
        if not n:
            return {"n": 0, "p50": None, "p99": None, "max": None}
        return {
            "n": n,
            "p50": lags[n // 2],
            "p99": lags[min(n - 1, int(n * 0.99))],
            "max": lags[-1],
        }


async def idle(event: asyncio.Event) -> None:
    await event.wait()


async def worker(q: asyncio.Queue[int], results: asyncio.Queue[int]) -> None:
    while True:
        n = await q.get()
        h = 17
        for _ in range(n):
            item = await q.get()  # the items 0..n-1 follow the count
            h = (h * 31 + item * item) % (2**61 - 1)
        results.put_nowait(h)


def state(loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    factory = loop.get_task_factory()
    return {
        "handle_run_original": asyncio.events.Handle._run is ORIGINAL_RUN,
        "get_nowait_original": asyncio.Queue.get_nowait is ORIGINAL_GET_NOWAIT,
        "tq_get_original": queue.Queue.get is ORIGINAL_TQ_GET,
        "threads": sorted(t.name for t in threading.enumerate()),
        "gc_callbacks": len(gc.callbacks),
        "fds": sorted(os.listdir("/proc/self/fd"), key=int),
        "rss": rss_bytes(),
        "profile": sys.getprofile() is not None,
        "trace": sys.gettrace() is not None,
        "task_factory": "eager"
        if factory is getattr(asyncio, "eager_task_factory", 0)
        else getattr(factory, "__qualname__", repr(factory)),
        "agent_running": vmtop.agent.is_running(),
    }


def forked_child(parent_pid: int, parent_socket: str, linger: float) -> None:
    """In the child: report what it inherited, start its own agent, live ``linger`` s."""
    try:
        st = os.lstat(parent_socket)
        info = {
            "pid": os.getpid(),
            "parent": parent_pid,
            "agent_running": vmtop.agent.is_running(),
            "socket_path": str(vmtop.agent.socket_path()),
            "parent_socket_is_socket": stat.S_ISSOCK(st.st_mode),
            "parent_socket_uid": st.st_uid,
            "handle_run_original": asyncio.events.Handle._run is ORIGINAL_RUN,
            "get_nowait_original": asyncio.Queue.get_nowait is ORIGINAL_GET_NOWAIT,
            "tq_get_original": queue.Queue.get is ORIGINAL_TQ_GET,
        }
        own = vmtop.agent.start(strict=True)
        info["own_socket"] = str(own)
        info["own_running"] = vmtop.agent.is_running()

        def leave(*_: object) -> None:
            vmtop.agent.stop()
            os._exit(0)

        signal.signal(signal.SIGTERM, leave)
        say(child=info)
        time.sleep(linger)
        leave()
    except BaseException as exc:  # report, never fall back into the parent's code
        say(child={"error": repr(exc)})
    finally:
        os._exit(1)


async def main(argv: list[str]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    if "--eager" in argv and hasattr(asyncio, "eager_task_factory"):
        loop.set_task_factory(asyncio.eager_task_factory)
    n_tasks = int(argv[argv.index("--tasks") + 1]) if "--tasks" in argv else 0
    probe = LagProbe(loop)
    probe.arm()
    never = asyncio.Event()
    idles = [asyncio.create_task(idle(never), name=f"idle-{i:05d}") for i in range(n_tasks)]
    jobs: asyncio.Queue[int] = asyncio.Queue()
    results: asyncio.Queue[int] = asyncio.Queue()
    work = asyncio.create_task(worker(jobs, results), name="worker")
    stop = asyncio.Event()
    outcome: dict[str, Any] = {"code": 0, "after": None}
    pending: set[asyncio.Task[None]] = set()

    async def check(n: int) -> None:
        jobs.put_nowait(n)
        for i in range(n):
            jobs.put_nowait(i)
        say(check=await results.get())

    def on_line(line: str | None) -> None:
        if line is None:
            stop.set()
            return
        cmd, *args = line.split()
        if cmd == "state":
            say(state=state(loop))
        elif cmd == "lag_reset":
            probe.samples.clear()
            say(lag_reset=True)
        elif cmd == "lag":
            say(lag=probe.figures())
        elif cmd == "check":
            t = asyncio.create_task(check(int(args[0])), name="check")
            pending.add(t)
            t.add_done_callback(pending.discard)
        elif cmd == "block":
            say(blocking=float(args[0]))
            time.sleep(float(args[0]))
            say(blocked=float(args[0]))
        elif cmd == "fork":
            parent, path = os.getpid(), str(vmtop.agent.socket_path())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: multi-threaded fork
                child = os.fork()
            if child == 0:
                forked_child(parent, path, float(args[0]))
            say(forked=child)
        elif cmd == "close_loop":
            outcome["after"] = float(args[0])
            stop.set()
        elif cmd in ("exit", "quit"):
            outcome["code"] = int(args[0])
            stop.set()

    read_lines(loop, on_line)
    say(ready=True, pid=os.getpid(), tasks=n_tasks, socket=str(vmtop.agent.socket_path()))
    await stop.wait()
    loop.remove_reader(sys.stdin.fileno())
    for t in [*idles, work]:
        t.cancel()
    return outcome


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1:]))
    if result["after"] is not None:
        say(loop_closed=True)
        time.sleep(result["after"])
    sys.exit(result["code"])
