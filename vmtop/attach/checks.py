"""Pre-flight checks: everything we can learn about a target before touching it.

:func:`preflight` reads ``/proc`` only (no ptrace, no signal) and either returns a
:class:`Target` or raises :class:`AttachError` with one line that says what is wrong and what
to do. The checks, in order: the pid is a live process (not a thread, not us, not stopped or
a zombie), it runs CPython 3.11+ (libpython or a ``python3.X`` executable mapped), it belongs to
us (or we are root), nobody traces it yet, ptrace is allowed (Yama, CAP_SYS_PTRACE), it runs
our Python minor version (the bootstrap imports *this* vmtop) and it can read our vmtop
directory, which it must see at the same path when it lives in another mount namespace (a
container, ``unshare -m``; its files are then reached through ``/proc/PID/root``). Which injector runs, and
whether it is there, is :mod:`.methods`' business.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

MIN_VERSION = (3, 11)
REMOTE_EXEC_VERSION = (3, 14)
CAP_SYS_PTRACE = 19

_LIB_RE = re.compile(r"/libpython(\d+)\.(\d+)(t?)[^/]*\.so")
_EXE_RE = re.compile(r"python(\d+)\.(\d+)(t?)$")


class AttachError(Exception):
    """Why a target cannot be attached to, in one line that says what to do."""


@dataclass(frozen=True)
class Target:
    pid: int
    exe: str  # the executable's real path
    argv0: str  # what the program was started as (a venv's python keeps its own path here)
    cmdline: str
    uid: int
    gid: int
    version: tuple[int, int]
    free_threaded: bool
    notes: tuple[str, ...] = field(default=())
    foreign: bool = False  # in another mount namespace: its files are under /proc/PID/root

    def view(self, path: str | os.PathLike[str]) -> Path:
        """``path`` as the target sees it, for us (through ``/proc/PID/root`` if foreign)."""
        return Path(f"/proc/{self.pid}/root{os.fspath(path)}") if self.foreign else Path(path)

    def unview(self, path: str | os.PathLike[str]) -> str:
        """The inverse of :meth:`view`: a path of ours as the target sees it."""
        text = os.fspath(path)
        prefix = f"/proc/{self.pid}/root/"
        return text[len(prefix) - 1 :] if self.foreign and text.startswith(prefix) else text

    @property
    def version_text(self) -> str:
        return f"{self.version[0]}.{self.version[1]}{'t' if self.free_threaded else ''}"

    @property
    def interpreter(self) -> str:
        """The best path to tell the user to run (argv[0] when absolute, else the exe)."""
        return self.argv0 if os.path.isabs(self.argv0) else self.exe


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a dict (``Name``, ``State``, ``Tgid``, ``Uid``, ...)."""
    out: dict[str, str] = {}
    for line in _read(f"/proc/{pid}/status").splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def python_version(pid: int, exe: str) -> tuple[int, int, bool] | None:
    """(major, minor, free-threaded) of the CPython mapped into ``pid``, or None."""
    try:
        maps = _read(f"/proc/{pid}/maps")
    except OSError:
        maps = ""
    if "pypy" in maps.lower():
        return None
    m = _LIB_RE.search(maps)
    if m:
        return int(m.group(1)), int(m.group(2)), bool(m.group(3))
    m = _EXE_RE.search(os.path.basename(exe))
    if m and exe in maps:
        return int(m.group(1)), int(m.group(2)), bool(m.group(3))
    return None


def capability(bit: int, pid: int | str = "self") -> bool:
    try:
        for line in _read(f"/proc/{pid}/status").splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError):
        pass
    return False


def ptrace_scope() -> int | None:
    try:
        return int(_read("/proc/sys/kernel/yama/ptrace_scope").strip())
    except (OSError, ValueError):
        return None


def is_ancestor(pid: int) -> bool:
    """True when ``pid`` descends from us (Yama scope 1 allows tracing descendants)."""
    me = os.getpid()
    current = pid
    for _ in range(64):
        try:
            ppid = int(proc_status(current).get("PPid", "0"))
        except (OSError, ValueError):
            return False
        if ppid == me:
            return True
        if ppid <= 1:
            return False
        current = ppid
    return False


def readable_by(path: str, uid: int, gid: int) -> bool:
    """Whether ``uid``/``gid`` may traverse to and read ``path`` (mode bits, no ACLs)."""
    if uid == 0:
        return True
    p = Path(path).resolve()
    for part in [*reversed(p.parents), p]:
        try:
            st = os.stat(part)
        except OSError:
            return False
        need = stat.S_IXOTH if part != p or stat.S_ISDIR(st.st_mode) else stat.S_IROTH
        if st.st_uid == uid:
            need <<= 6
        elif st.st_gid == gid:
            need <<= 3
        if not st.st_mode & need:
            return False
    return True


def same_mount_namespace(pid: int) -> bool | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
    except OSError:
        return None


def _no_cap(who: str, uids: list[int], gids: list[int]) -> str:
    return (
        f"{who} runs as uid {uids[1]}, gid {gids[1]}: tracing it needs CAP_SYS_PTRACE, which "
        "this vmtop does not have; run vmtop as that user and group, or give it the "
        "capability (in a container: --cap-add SYS_PTRACE)"
    )


def same_file(ours: str, theirs: str) -> bool:
    """Whether two paths name the same directory or file (device and inode)."""
    try:
        a, b = os.stat(ours), os.stat(theirs)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def describe(pid: int) -> str:
    """``pid N (argv...)`` for messages; just ``pid N`` when unreadable."""
    try:
        argv = _read(f"/proc/{pid}/cmdline").split("\0")
        cmd = " ".join(" ".join(argv).split())[:80]  # one line, whatever the argv holds
    except OSError:
        cmd = ""
    return f"pid {pid} ({cmd})" if cmd else f"pid {pid}"


def preflight(pid: int, import_paths: list[str] | None = None) -> Target:
    """Check everything about ``pid`` that injection needs; raise :class:`AttachError`.

    In this order: the process exists and runs; its executable; a CPython new enough; our
    right to trace it; its mount namespace; the same Python as ours; its user can read us.
    """
    status, who = _live_process(pid)
    uids = [int(x) for x in status.get("Uid", "0 0 0 0").split()]
    gids = [int(x) for x in status.get("Gid", "0 0 0 0").split()]
    exe = _executable(pid, who, uids, gids)
    try:
        argv = [a for a in _read(f"/proc/{pid}/cmdline").split("\0") if a]
    except OSError:
        argv = []
    version, free_threaded, label = _cpython(pid, who, exe)
    _may_trace(pid, who, status, uids, gids)
    foreign = same_mount_namespace(pid) is False
    if foreign:
        _sees_us(pid, who, import_paths or [])
    argv0 = argv[0] if argv else exe
    interpreter = argv0 if os.path.isabs(argv0) else exe
    _same_python(pid, who, version, free_threaded, label, interpreter)
    if os.geteuid() == 0 and uids[1] != 0:
        _can_read_us(who, uids[1], gids[1], import_paths or [])
    return Target(
        pid=pid,
        exe=exe,
        argv0=argv0,
        cmdline=" ".join(argv),
        uid=uids[1],
        gid=gids[1],
        version=(version[0], version[1]),
        free_threaded=free_threaded,
        foreign=foreign,
    )


def _live_process(pid: int) -> tuple[dict[str, str], str]:
    """``/proc/PID/status`` of a process (not a thread) that runs; and how to name it."""
    if pid <= 0:
        raise AttachError(f"invalid pid {pid}")
    if pid == os.getpid():
        raise AttachError(f"pid {pid} is vmtop itself")
    try:
        status = proc_status(pid)
    except FileNotFoundError:
        raise AttachError(f"no process with pid {pid}") from None
    except PermissionError:
        raise AttachError(f"cannot read /proc/{pid}/status: permission denied") from None
    except OSError as exc:
        raise AttachError(f"cannot read /proc/{pid}: {exc.strerror}") from None
    tgid = int(status.get("Tgid", pid))
    if tgid != pid:
        raise AttachError(f"pid {pid} is a thread of process {tgid}: use {tgid}")
    who = describe(pid)
    state = status.get("State", "?")
    if state.startswith("Z"):
        raise AttachError(f"{who} is a zombie: it has exited")
    if state.startswith(("T", "t")):
        raise AttachError(
            f"{who} is stopped ({state}): resume it first (kill -CONT {pid}) or detach its debugger"
        )
    return status, who


def _executable(pid: int, who: str, uids: list[int], gids: list[int]) -> str:
    me = os.geteuid()
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except PermissionError:
        if me == 0 or me in uids[:3]:  # the same ptrace check guards /proc/PID/exe
            raise AttachError(_no_cap(who, uids, gids)) from None
        raise AttachError(
            f"{who} belongs to uid {uids[0]}: run vmtop as that user (or as root)"
        ) from None
    except OSError:
        raise AttachError(
            f"{who} has no executable (a kernel thread?): not a Python process"
        ) from None
    return exe.removesuffix(" (deleted)")


def _cpython(pid: int, who: str, exe: str) -> tuple[tuple[int, int], bool, str]:
    """(major, minor), free-threaded, and the label ("3.13t") of the target's CPython."""
    found = python_version(pid, exe)
    if found is None:
        raise AttachError(f"{who} is not a CPython process ({os.path.basename(exe)})")
    version = (found[0], found[1])
    free_threaded = found[2]
    label = f"{version[0]}.{version[1]}{'t' if free_threaded else ''}"
    if version < MIN_VERSION:
        raise AttachError(f"{who} runs Python {label}; vmtop attaches to Python 3.11 or newer")
    return version, free_threaded, label


def _may_trace(
    pid: int, who: str, status: dict[str, str], uids: list[int], gids: list[int]
) -> None:
    """Our user, the target's tracer, yama's ptrace_scope and CAP_SYS_PTRACE allow ptrace."""
    me = os.geteuid()
    if me != 0 and me not in uids[:3]:
        raise AttachError(f"{who} belongs to uid {uids[0]}: run vmtop as that user (or as root)")
    tracer = int(status.get("TracerPid", "0") or 0)
    if tracer:
        raise AttachError(
            f"{who} is already traced by {describe(tracer)}: detach that debugger first"
        )
    has_cap = capability(CAP_SYS_PTRACE)
    scope = ptrace_scope()
    if scope == 3:
        raise AttachError(
            "ptrace is disabled on this host (kernel.yama.ptrace_scope=3); only a reboot "
            "re-enables it: start the program with 'vmtop run' instead"
        )
    if scope == 2 and not has_cap:
        raise AttachError(
            "ptrace is limited to admins (kernel.yama.ptrace_scope=2): run vmtop as root "
            "or with CAP_SYS_PTRACE"
        )
    if scope == 1 and not has_cap and not is_ancestor(pid):
        raise AttachError(
            "ptrace of non-child processes is blocked (kernel.yama.ptrace_scope=1): run "
            "vmtop as root, or 'sudo sysctl kernel.yama.ptrace_scope=0'"
        )
    # The kernel lets a tracer without CAP_SYS_PTRACE attach only when its real uid and gid
    # are the target's real, effective and saved ones (a root vmtop in a container without
    # the capability, a setuid or setgid program).
    same_ids = set(uids[:3]) == {os.getuid()} and set(gids[:3]) == {os.getgid()}
    if not same_ids and not has_cap:
        raise AttachError(_no_cap(who, uids, gids))


def _sees_us(pid: int, who: str, import_paths: list[str]) -> None:
    """A target in another mount namespace sees this vmtop's directories at the same paths."""
    for path in import_paths:
        if not same_file(path, f"/proc/{pid}/root{path}"):
            raise AttachError(
                f"{who} runs in another mount namespace (a container?) where {path}, this "
                "vmtop's directory, is not the same: install vmtop inside it and run it "
                "there, or mount this directory at the same path"
            )


def _same_python(
    pid: int,
    who: str,
    version: tuple[int, int],
    free_threaded: bool,
    label: str,
    interpreter: str,
) -> None:
    """The target runs the Python version and build this vmtop runs on."""
    ours = sys.version_info[:2]
    if version != ours:
        from vmtop import __version__

        raise AttachError(
            f"{who} runs Python {label} but this vmtop runs on {ours[0]}.{ours[1]}: install "
            f"vmtop for that interpreter and attach with it: {interpreter} -m pip install "
            f"'vmtop=={__version__}' && {interpreter} -m vmtop attach {pid}"
        )
    if free_threaded != ("t" in getattr(sys, "abiflags", "")):
        raise AttachError(
            f"{who} runs a {'free-threaded' if free_threaded else 'GIL'} build of Python "
            f"{label}, unlike this vmtop: attach with {interpreter} -m vmtop"
        )


def _can_read_us(who: str, uid: int, gid: int, import_paths: list[str]) -> None:
    """A root vmtop attaching to another user's process: that user can read vmtop's files."""
    for path in import_paths:
        if not readable_by(path, uid, gid):
            raise AttachError(
                f"{who} (uid {uid}) cannot read {path}, where this vmtop lives: "
                f"install vmtop where that user can read it, or run vmtop as that user"
            )
