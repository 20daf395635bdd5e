"""Where agents listen: ``$XDG_RUNTIME_DIR/vmtop/<pid>.sock`` (else ``/tmp/vmtop-<uid>/``).

The directory must be ours: created 0700, and checked with ``lstat`` (a directory, not a
symlink, owned by this uid, no group/other bits) before anything is placed in or read from it.

A client finds another process's agent with :func:`agent_socket_path`: where that process
itself put it (its own pid, uid and ``XDG_RUNTIME_DIR``), seen through ``/proc/PID/root``
when it lives in another mount namespace (a container, a ``PrivateTmp=`` service, ``unshare
-m``), in its own pid and user namespaces' numbering. Which processes have an agent (one
pass, no connection) is :mod:`vmtop.discovery`'s.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


class UnsafeDirectory(Exception):
    """The socket directory exists but is not safe to use; the message says why and what to do."""


def socket_dir(uid: int | None = None) -> Path:
    uid = os.getuid() if uid is None else uid
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and uid == os.getuid():
        return Path(runtime) / "vmtop"
    return Path(f"/tmp/vmtop-{uid}")


def socket_path(pid: int, uid: int | None = None) -> Path:
    return socket_dir(uid) / f"{pid}.sock"


def check_dir(path: Path, uid: int | None = None) -> None:
    """Raise :class:`UnsafeDirectory` unless ``path`` is a 0700 directory owned by ``uid``."""
    uid = os.getuid() if uid is None else uid
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeDirectory(f"{path} is a symlink; refusing to use it (remove it and retry)")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(
            f"{path} is not a directory; refusing to use it (remove it and retry)"
        )
    if st.st_uid != uid:
        raise UnsafeDirectory(
            f"{path} is owned by uid {st.st_uid}, not {uid}; refusing to use it (remove it and retry)"
        )
    if st.st_mode & 0o077:
        raise UnsafeDirectory(
            f"{path} has mode {stat.S_IMODE(st.st_mode):o}, expected 700; refusing to use it "
            f"(chmod 700 it or remove it)"
        )


def ensure_dir(uid: int | None = None) -> Path:
    """Create the socket directory 0700 if missing; check it either way."""
    path = socket_dir(uid)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    check_dir(path, uid)
    return path


@dataclass(frozen=True)
class AgentLocation:
    """Where ``pid``'s agent listens: ``path`` for us, ``owner`` the uid its directory must
    have, ``theirs`` the path as the target sees it, ``foreign`` when the target lives in
    another mount namespace (``path`` then goes through ``/proc/PID/root``)."""

    path: Path
    owner: int
    theirs: Path
    foreign: bool


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a dict (raises ``OSError`` once the process is gone)."""
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def other_mount_namespace(pid: int) -> bool:
    """True when ``pid`` sees another file system tree than we do (False when unknown)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    except OSError:
        return False


def _environ(pid: int, name: str) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for item in data.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def _inner_uid(pid: int, uid: int) -> int:
    """``uid`` (the target's real uid as we see it) as the target sees it: different in
    another user namespace (a rootless container maps its root to a user of the host)."""
    try:
        if os.readlink(f"/proc/{pid}/ns/user") == os.readlink("/proc/self/ns/user"):
            return uid
        with open(f"/proc/{pid}/uid_map", encoding="ascii") as f:
            for line in f:  # inside, outside (in our namespace), count
                inside, outside, count = (int(v) for v in line.split())
                if outside <= uid < outside + count:
                    return inside + uid - outside
    except (OSError, ValueError):
        pass
    return uid


def agent_socket_path(pid: int) -> AgentLocation:
    """Where ``pid``'s agent listens, or would: raises ``OSError`` when ``/proc`` says nothing.

    Our own processes in our mount namespace: :func:`socket_path` (what the agent computes
    with the same environment). Others (another user's, when we are root; another mount, pid
    or user namespace): the directory that process computes, from its real uid and its pid
    as it sees them, and its ``XDG_RUNTIME_DIR`` (as it started), seen from here.
    """
    return location_from_status(pid, proc_status(pid))


def location_from_status(pid: int, status: dict[str, str]) -> AgentLocation:
    """:func:`agent_socket_path` from ``/proc/PID/status`` already read (``vmtop.discovery``
    reads it once per process for the uid as well)."""
    uid = int(status.get("Uid", "0").split()[0])
    inner = int((status.get("NSpid") or str(pid)).split()[-1])
    foreign = other_mount_namespace(pid)
    inner_uid = _inner_uid(pid, uid)
    if not foreign and uid == os.getuid() and inner == pid and inner_uid == uid:
        path = socket_path(pid)
        return AgentLocation(path, uid, path, False)
    root = f"/proc/{pid}/root" if foreign else ""
    runtime = _environ(pid, "XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(root + runtime):
        directory = Path(runtime) / "vmtop"
    else:
        directory = Path(f"/tmp/vmtop-{inner_uid}")
    theirs = directory / f"{inner}.sock"
    return AgentLocation(Path(root + str(theirs)), uid, theirs, foreign)
