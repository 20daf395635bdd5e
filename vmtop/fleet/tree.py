"""The local process tree: Python processes, their parents, and which of them run an agent."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from vmtop import discovery


@dataclass(frozen=True)
class PyProcess:
    pid: int
    ppid: int
    user: str
    python: str
    agent: str  # "listening" | "stale" | "-"
    cmdline: str
    socket: str = ""  # the agent's socket as reached from here, unless agent is "-"


_VERSION_RE = re.compile(r"libpython(\d+\.\d+)|/python(\d+\.\d+)")


def python_version(pid: int, exe: str) -> str:
    """X.Y from the loaded libpython or the executable's name; '?' when neither says."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                if "libpython" in line or "/python3." in line:
                    m = _VERSION_RE.search(line)
                    if m:
                        return m.group(1) or m.group(2)
    except OSError:
        pass
    m = re.search(r"python(\d+\.\d+)", os.path.basename(os.path.realpath(exe)) if exe else "")
    return m.group(1) if m else "?"


def agent_state(pid: int) -> str:
    """ "listening" when ``pid`` itself listens on its agent's socket, "stale" for a file
    nobody serves (a process that ended without removing it), "-" for no socket (or one that
    is another process's): :func:`vmtop.discovery.agent_state`, in a container too."""
    return discovery.agent_state(pid)


def python_processes(all_users: bool = False) -> list[PyProcess]:
    import psutil

    me = os.getuid()
    found = []
    for proc in psutil.process_iter(["pid", "ppid", "name", "exe", "cmdline", "uids", "username"]):
        info = proc.info
        if proc.pid == os.getpid():
            continue
        uids = info.get("uids")
        if not all_users and (uids is None or uids.real != me) and me != 0:
            continue
        exe = info.get("exe") or ""
        name = info.get("name") or ""
        if not ("python" in os.path.basename(exe) or name.startswith("python")):
            continue
        found.append((proc.pid, info, exe))
    agents = discovery.discover(pid for pid, _, _ in found)  # one pass, no connection
    return [
        PyProcess(
            pid=pid,
            ppid=info.get("ppid") or 0,
            user=info.get("username") or "?",
            python=python_version(pid, exe),
            agent=agents[pid].state if pid in agents else discovery.NONE,
            cmdline=" ".join(info.get("cmdline") or []),
            socket=str(agents[pid].location.path)
            if pid in agents and agents[pid].state != discovery.NONE
            else "",
        )
        for pid, info, exe in found
    ]


def as_tree(procs: list[PyProcess]) -> list[tuple[int, PyProcess]]:
    """``(depth, process)`` in tree order: each process right after its nearest Python
    ancestor in the list (parent -> workers), roots by pid."""
    by_pid = {p.pid: p for p in procs}
    parent: dict[int, int | None] = {}
    for p in procs:
        parent[p.pid] = _python_ancestor(p.ppid, by_pid)
    children: dict[int | None, list[int]] = {}
    for pid, up in parent.items():
        children.setdefault(up, []).append(pid)
    out: list[tuple[int, PyProcess]] = []

    def walk(pid: int, depth: int) -> None:
        out.append((depth, by_pid[pid]))
        for child in sorted(children.get(pid, ())):
            walk(child, depth + 1)

    for root in sorted(children.get(None, ())):
        walk(root, 0)
    return out


def _python_ancestor(ppid: int, by_pid: dict[int, PyProcess]) -> int | None:
    # A worker's parent may be a shell or a launcher (`sh -c`): skip to the nearest ancestor
    # that is listed.
    for _ in range(64):
        if ppid <= 1:
            return None
        if ppid in by_pid:
            return ppid
        ppid = parent_pid(ppid)
    return None


def parent_pid(pid: int) -> int:
    """``pid``'s parent (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rpartition(b")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def is_python(pid: int) -> bool:
    """Whether ``pid`` runs a Python interpreter (by its command name or executable)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return comm.startswith("python") or "python" in os.path.basename(exe)


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children, their children...), by pid."""
    import psutil

    try:
        return sorted(c.pid for c in psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []
