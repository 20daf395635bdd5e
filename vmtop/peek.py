"""Peek mode: watch a Python process without loading any code into it.

``PeekSource(pid)`` has the reading half of :class:`~vmtop.client.AgentClient`'s interface
(``connect``, ``snapshot``, ``detail``, ``close``, context manager) and builds the same
:class:`~vmtop.records.Snapshot` records, so ``vmtop top --peek``, its ``--json`` and the TUI
show it with the same views. Its sources:

- thread stacks from ``py-spy dump --pid PID --json`` (py-spy reads the target's memory with
  ptrace rights and pauses it for the ~10-20 ms of the read);
- per-thread CPU times, process CPU %, RSS and open file descriptors from psutil.

What it cannot see is ``None`` ("–"): asyncio tasks and queues (no rows), reductions,
mailboxes, memory estimates, loops, GC. ``NodeInfo.tasks`` is 0 and a snapshot note says
that tasks are not visible in peek mode.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from vmtop.client import ClientError, TargetGone, pid_exists
from vmtop.records import KINDS, SORT_KEYS, Location, NodeInfo, ProcessRow, Snapshot

PYSPY_TIMEOUT = 10.0
_STATES = {"R": "running", "S": "sleeping", "D": "blocked", "T": "stopped", "Z": "zombie"}
PEEK_NOTE = (
    "peek mode: nothing loaded in the target; thread stacks from py-spy, figures from psutil; "
    "asyncio tasks, queues, reductions, mailboxes, memory and GC are not visible"
)


def pyspy_path() -> str:
    """The py-spy executable installed beside this Python, else the one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if os.access(here, os.X_OK):
        return here
    found = shutil.which("py-spy")
    if found is None:
        raise ClientError("py-spy is not installed: pip install py-spy")
    return found


def pyspy_error(pid: int, stderr: str) -> str:
    """A one-line message (with what to do) for a failed py-spy run."""
    text = " ".join(stderr.split(" Stack backtrace:")[0].split("Stack backtrace:")[0].split())
    text = text.removeprefix("Error: ")
    if not pid_exists(pid):
        return f"target pid {pid} exited"
    if "Permission denied" in text or "Operation not permitted" in text:
        return (
            f"py-spy may not read pid {pid} (ptrace permission): run as its user or root; in "
            "a container add CAP_SYS_PTRACE"
        )
    if "python" in text.lower() and ("failed to find" in text.lower() or "not" in text.lower()):
        return f"pid {pid} does not look like a Python process (py-spy: {text[:160]})"
    return f"py-spy failed on pid {pid}: {text[:200] or 'no output'}"


def dump(pid: int, timeout: float = PYSPY_TIMEOUT) -> list[dict[str, Any]]:
    """``py-spy dump --json`` of ``pid``: one dict per thread, frames innermost first."""
    try:
        proc = subprocess.run(
            [pyspy_path(), "dump", "--pid", str(pid), "--json", "--full-filenames"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ClientError(f"py-spy did not answer within {timeout:.0f} s for pid {pid}") from None
    except OSError as exc:
        raise ClientError(f"cannot run py-spy: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        if not pid_exists(pid):
            raise TargetGone(f"target pid {pid} exited")
        raise ClientError(pyspy_error(pid, proc.stderr or proc.stdout))
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise ClientError(f"py-spy printed no JSON for pid {pid}") from None
    if not isinstance(data, list):
        raise ClientError(f"unexpected py-spy output for pid {pid}")
    return [t for t in data if isinstance(t, dict)]


def kernel_state(pid: int, tid: int | None) -> str:
    if tid is None:
        return "-"
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return "-"
    rest = data[data.rfind(b")") + 2 :]
    return _STATES.get(rest[:1].decode(errors="replace"), "-")


def frame_location(frame: dict[str, Any]) -> Location:
    return Location(
        function=str(frame.get("name") or "?"),
        file=str(frame.get("filename") or ""),
        line=int(frame.get("line") or 0),
    )


class PeekSource:
    """Snapshots of ``pid`` built from py-spy and psutil; nothing runs inside the target."""

    read_only_note = "peek: read-only, threads"  # the TUI's status line (ReadOnlySource)

    def __init__(self, pid: int, timeout: float = PYSPY_TIMEOUT) -> None:
        self.pid = pid
        self.timeout = timeout
        self.agent_version = ""
        self._process: Any = None
        self._prev_cpu: dict[int, float] = {}
        self._prev_at = 0.0
        self._stacks: dict[str, dict[str, Any]] = {}

    # -- lifecycle (AgentClient's shape) -----------------------------------------------------
    def connect(self) -> PeekSource:
        import psutil

        if self.pid <= 0:
            raise ClientError(f"invalid pid {self.pid}")
        try:
            proc = psutil.Process(self.pid)
            proc.cpu_percent(None)  # prime: the first snapshot covers the time since connect
            self._prev_cpu = {t.id: t.user_time + t.system_time for t in proc.threads()}
        except psutil.NoSuchProcess:
            raise ClientError(f"no process with pid {self.pid}") from None
        except psutil.AccessDenied:
            raise ClientError(
                f"cannot read pid {self.pid}: run vmtop as its user (or as root)"
            ) from None
        self._process = proc
        self._prev_at = time.monotonic()
        dump(self.pid, self.timeout)  # fail now (not a Python process, no permission)
        return self

    def close(self) -> None:
        self._process = None

    def __enter__(self) -> PeekSource:
        return self.connect() if self._process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------
    def snapshot(
        self,
        sort: str = "reductions",
        limit: int = 50,
        filter: str = "",
        accumulate: bool = False,
        kinds: tuple[str, ...] = KINDS,
        memory: bool = True,
        groups: int = 20,
    ) -> Snapshot:
        if sort not in SORT_KEYS:
            raise ClientError(f"sort must be one of {', '.join(SORT_KEYS)}")
        if self._process is None:
            self.connect()
        began = time.monotonic()
        threads = dump(self.pid, self.timeout)
        cost = time.monotonic() - began
        figures = self._process_figures()
        now = time.monotonic()
        interval = now - self._prev_at
        self._prev_at = now

        self._stacks = {}
        rows = [
            row
            for t in threads
            if (row := self._thread_row(t, figures.cpu_times, kinds, filter.lower())) is not None
        ]
        self._prev_cpu = figures.cpu_times
        notes = [PEEK_NOTE, f"open file descriptors: {figures.fds}"]
        if sort != "time":
            notes.append(f"sorted by thread CPU time ({sort} is not measured in peek mode)")
        return Snapshot(
            node=self._node(figures, len(threads)),
            rows=tuple(_by_cpu_time(rows, accumulate)[:limit]),
            sort=sort,
            accumulate=accumulate,
            interval=interval,
            total_rows=len(rows),
            taken_at=time.time(),
            cost=cost,
            loop_time=0.0,
            notes=tuple(notes),
        )

    def _process_figures(self) -> _Figures:
        """What psutil says of the whole process (one ``oneshot`` read)."""
        import psutil

        proc = self._process
        try:
            with proc.oneshot():
                return _Figures(
                    cpu_percent=proc.cpu_percent(None),
                    rss=proc.memory_info().rss,
                    fds=proc.num_fds(),
                    cpu_times={t.id: t.user_time + t.system_time for t in proc.threads()},
                    argv=tuple(proc.cmdline()),
                    uptime=max(0.0, time.time() - proc.create_time()),
                )
        except psutil.NoSuchProcess:
            raise TargetGone(f"target pid {self.pid} exited") from None
        except psutil.AccessDenied:
            raise ClientError(f"cannot read pid {self.pid}: permission denied") from None

    def _thread_row(
        self, thread: dict[str, Any], cpu_times: dict[int, float], kinds: tuple[str, ...], text: str
    ) -> ProcessRow | None:
        """The row of one thread py-spy dumped (None: filtered out); its stack is kept for
        :meth:`detail` either way."""
        tid = thread.get("os_thread_id")
        tid = int(tid) if isinstance(tid, int) else None
        ident = tid if tid is not None else int(thread.get("thread_id") or 0)
        name = str(thread.get("thread_name") or f"thread {ident}")
        frames = [f for f in thread.get("frames") or [] if isinstance(f, dict)]
        key = f"thread:{ident}"
        self._stacks[key] = {"name": name, "thread": thread, "frames": frames}
        if "thread" not in kinds or (text and text not in name.lower()):
            return None
        total = cpu_times.get(tid) if tid is not None else None
        prev = self._prev_cpu.get(tid) if tid is not None else None
        delta = None if total is None else total - (prev if prev is not None else 0.0)
        notes = ["time = thread CPU seconds (psutil)", "stack from py-spy"]
        if thread.get("owns_gil"):
            notes.append("holds the GIL")
        return ProcessRow(
            key=key,
            kind="thread",
            id=str(ident),
            name=name,
            state=kernel_state(self.pid, tid),
            time=delta,
            time_total=total,
            current=frame_location(frames[0]) if frames else None,
            waiting_on="" if thread.get("active") else "idle",
            notes=tuple(notes),
        )

    def _node(self, figures: _Figures, threads: int) -> NodeInfo:
        return NodeInfo(
            pid=self.pid,
            argv=figures.argv,
            python=_python_version(self.pid),
            implementation="CPython",
            uptime=figures.uptime,
            cpu_percent=figures.cpu_percent,
            rss=figures.rss,
            threads=threads,
            tasks=0,
        )

    def detail(self, key: str) -> dict[str, Any]:
        """The full stack (outermost first) of a thread row from the last snapshot."""
        entry = self._stacks.get(key)
        if entry is None:
            raise ClientError(f"no row {key!r} in the last peek snapshot")
        frames = list(reversed(entry["frames"]))
        return {
            "key": key,
            "kind": "thread",
            "name": entry["name"],
            "stack": [
                {"function": loc.function, "file": loc.file, "line": loc.line}
                for loc in (frame_location(f) for f in frames)
            ],
            "notes": ["peek mode: stack from py-spy; no locals"],
        }

    def cancel(self, key: str) -> dict[str, Any]:
        raise ClientError("peek mode cannot change the target (no agent is loaded)")


@dataclass(frozen=True, slots=True)
class _Figures:
    cpu_percent: float
    rss: int
    fds: int
    cpu_times: dict[int, float]  # thread id -> CPU seconds
    argv: tuple[str, ...]
    uptime: float


def _by_cpu_time(rows: list[ProcessRow], accumulate: bool) -> list[ProcessRow]:
    """Only thread CPU time is measured here: every sort key falls back to it."""

    def key(row: ProcessRow) -> tuple[bool, float]:
        value = row.time_total if accumulate else row.time
        return value is None, -(value or 0.0)

    return sorted(rows, key=key)


def _python_version(pid: int) -> str:
    from vmtop.attach.checks import python_version

    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = ""
    found = python_version(pid, exe)
    return f"{found[0]}.{found[1]}" if found else "?"


__all__ = ["PEEK_NOTE", "PeekSource", "dump"]
