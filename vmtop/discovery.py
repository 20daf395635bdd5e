"""Which processes run an agent, seen from here: ``vmtop ps``, the fleet view and the
exporter all ask :func:`discover`.

One pass over ``/proc``, no connection. For each process: where its agent listens
(:func:`vmtop.paths.agent_socket_path`: its own mount, pid and user namespace, through
``/proc/PID/root``), and whether that process itself listens there: a listening Unix socket
bound to that name in its network namespace (``/proc/PID/net/unix``, read once per
namespace) whose inode is one of the process's own file descriptors (``/proc/PID/fd``, read
only for the processes with such a socket). That last check keys every agent by the process
that owns it, in host pids: a container's pid 7 (in its own pid namespace) binds
``/tmp/vmtop-0/7.sock``, where host pid 7's agent would be when the two share ``/tmp``; the
socket is the container process's, never host pid 7's, and is counted once.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vmtop.paths import AgentLocation, location_from_status

LISTENING = "listening"  # the process holds a listening socket at its agent's path
STALE = "stale"  # a socket file at that path that nobody listens on (its process ended)
NONE = "-"  # no file there, or a file that another process's agent listens on

_ACCEPTCON = 0x10000  # /proc/net/unix flags: a listening socket


@dataclass(frozen=True)
class AgentState:
    """One process's agent as seen from here: ``pid`` in our numbering, ``state`` one of
    :data:`LISTENING`, :data:`STALE`, :data:`NONE`, ``location`` where it listens (or would)."""

    pid: int
    state: str
    location: AgentLocation

    @property
    def listening(self) -> bool:
        return self.state == LISTENING


def discover(pids: Iterable[int] | None = None) -> dict[int, AgentState]:
    """The agent state of each of ``pids`` that still runs; with ``None``, every process of
    this user (real uid) whose agent listens (a process in our pid namespace without a
    listening socket of its name, ``N.sock``, in its network namespace costs two readlinks)."""
    listeners = _Listeners()
    out: dict[int, AgentState] = {}
    me = os.getuid()
    for pid in _all_pids() if pids is None else pids:
        if pids is None and not listeners.may_listen(pid):
            continue
        status = _status(pid)
        if status is None:
            continue  # gone, or not a process
        if pids is None:
            if _real_uid(status) != me:
                continue
            inner = (status.get("NSpid") or str(pid)).split()[-1]
            if not listeners.may_be_named(pid, f"{inner}.sock"):
                continue
        try:
            where = location_from_status(pid, status)
        except (OSError, ValueError):
            continue
        state = _state(pid, where, listeners)
        if pids is None and state != LISTENING:
            continue
        out[pid] = AgentState(pid, state, where)
    return out


def agent_state(pid: int) -> str:
    """:data:`LISTENING`, :data:`STALE` or :data:`NONE` for one process (``NONE`` once it is
    gone)."""
    found = discover([pid]).get(pid)
    return found.state if found is not None else NONE


def state_at(pid: int, where: AgentLocation) -> str:
    """The state of ``pid``'s agent at ``where`` (its :func:`~vmtop.paths.agent_socket_path`),
    for a client about to connect: :data:`NONE` when another process listens there (a pid
    namespace's pid ``pid`` sharing our ``/tmp``), :data:`STALE` when nothing in ``pid``'s
    network namespace does (a connect there would reach, at best, another namespace's agent)."""
    return _state(pid, where, _Listeners())


def listening(pids: Iterable[int] | None = None) -> list[int]:
    """The pids of :func:`discover` whose agent listens, sorted."""
    return sorted(pid for pid, found in discover(pids).items() if found.listening)


def _state(pid: int, where: AgentLocation, listeners: _Listeners) -> str:
    if not os.path.lexists(where.path):  # False too for a directory we may not read
        return NONE
    inodes = listeners.bound(pid, str(where.theirs))
    if inodes is None:  # no /proc/PID/net/unix here (a sandbox's /proc): ask the socket
        return LISTENING if _answers(where.path) else STALE
    if not inodes:
        return STALE
    held = _holds_one_of(pid, inodes)
    if held is None:  # its fds are not ours to read: the name is the only evidence
        return LISTENING
    return LISTENING if held else NONE


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


class _Listeners:
    """Listening Unix sockets by bound name, per network namespace (read once each)."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, set[int]] | None] = {}  # None: unreadable
        self._basenames: dict[str, set[str] | None] = {}
        self._pid_ns = _readlink("/proc/self/ns/pid")

    def _namespace(self, pid: int) -> str:
        try:
            ns = os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            ns = f"pid {pid}"  # unknown: its own table
        if ns not in self._tables:
            table = self._tables[ns] = _unix_listeners(pid)
            self._basenames[ns] = (
                None if table is None else {name.rpartition("/")[2] for name in table}
            )
        return ns

    def bound(self, pid: int, name: str) -> set[int] | None:
        """Inodes of the listening sockets bound to ``name`` in ``pid``'s network namespace
        (None when its table cannot be read)."""
        table = self._tables[self._namespace(pid)]
        return None if table is None else table.get(name, set())

    def may_be_named(self, pid: int, basename: str) -> bool:
        """Whether a listening socket in ``pid``'s network namespace may end in ``basename``
        (``N.sock``): False only when its table says not."""
        names = self._basenames[self._namespace(pid)]
        return names is None or basename in names

    def may_listen(self, pid: int) -> bool:
        """False when ``pid`` surely has no agent: it is numbered as in our pid namespace and
        no listening socket in its network namespace is named ``PID.sock`` (two readlinks;
        its status, five times dearer, is read only for the others)."""
        pid_ns = _readlink(f"/proc/{pid}/ns/pid")
        if pid_ns is None or pid_ns != self._pid_ns:
            return True  # unknown, or another numbering: look closer
        return self.may_be_named(pid, f"{pid}.sock")


def _unix_listeners(pid: int) -> dict[str, set[int]] | None:
    """``/proc/PID/net/unix``: bound name -> inodes of the listening sockets (vmtop's names only:
    every agent path has ``vmtop`` in it)."""
    table: dict[str, set[int]] = {}
    try:
        with open(f"/proc/{pid}/net/unix", "rb") as f:
            next(f, None)  # Num RefCount Protocol Flags Type St Inode Path
            for line in f:
                fields = line.split(None, 7)
                if len(fields) < 8 or b"vmtop" not in fields[7]:
                    continue
                if not int(fields[3], 16) & _ACCEPTCON:
                    continue
                name = fields[7].rstrip(b"\n").decode(errors="surrogateescape")
                table.setdefault(name, set()).add(int(fields[6]))
    except OSError:
        return None
    except ValueError:
        pass  # a line we do not understand: what came before stands
    return table


def _holds_one_of(pid: int, inodes: set[int]) -> bool | None:
    """Whether one of ``pid``'s file descriptors is a socket in ``inodes`` (None when its
    descriptors cannot be read: another user's process, or one that is not dumpable)."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except PermissionError:
        return None
    except OSError:
        return False  # gone
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                return True
        except OSError:
            continue  # closed meanwhile
    return False


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _all_pids() -> list[int]:
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())


def _status(pid: int) -> dict[str, str] | None:
    """The two lines of ``/proc/PID/status`` that :func:`location_from_status` reads (a full
    parse costs twice the read, and ``--all`` reads every process's)."""
    try:
        fd = os.open(f"/proc/{pid}/status", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 65536)
    except OSError:
        return None
    finally:
        os.close(fd)
    out: dict[str, str] = {}
    for key in ("Uid", "NSpid"):
        start = data.find(f"\n{key}:".encode())
        if start >= 0:
            start += len(key) + 2
            end = data.find(b"\n", start)
            out[key] = data[start : end if end >= 0 else None].strip().decode()
    return out if "Uid" in out else None


def _real_uid(status: dict[str, str]) -> int:
    try:
        return int(status.get("Uid", "-1").split()[0])
    except (ValueError, IndexError):
        return -1
