"""Which threads of a target the ptrace injector may borrow, best first (x86-64 numbers).

A thread **parked** in a blocking system call (``/proc/PID/task/TID/syscall``) is between two
calls of its program: waiting in epoll, a sleep, a condition variable, a socket read. It holds
no lock of libc's or the loader's, so it can run ``dlopen`` and ``pthread_create``. Not every
blocking call qualifies: ``futex(FUTEX_WAIT)`` is glibc's low-level lock wait (inside malloc,
the loader, stdio...), and a ``read`` of a regular file may be the loader reading a library;
both are skipped here, and the injector re-checks the call after stopping the thread.

A thread that is **running** is stopped and accepted only when its pc is in the interpreter's
own code (the injector's check; never libc, ld.so or an allocator) and it blocks none of the
signals the process catches (:func:`caught_signals`: else it is probably inside a signal
handler); else it is let go and the next pass tries again.

Order: parked threads other than the main one (an interrupted call of theirs is restarted by
the kernel or retried by CPython, unseen by the program), then the main thread parked, then
running threads, the main one first. No vmtop import: the injector's child process loads this
file by path.
"""

from __future__ import annotations

import os
import stat

FUTEX = 202
# Calls a thread parks in: wait for I/O, time, a child, a signal, a futex that is not a lock.
PARKED = {
    7: "poll",
    23: "select",
    34: "pause",
    35: "nanosleep",
    61: "wait4",
    128: "rt_sigtimedwait",
    130: "rt_sigsuspend",
    202: "futex",
    230: "clock_nanosleep",
    232: "epoll_wait",
    247: "waitid",
    270: "pselect6",
    271: "ppoll",
    281: "epoll_pwait",
    441: "epoll_pwait2",
}
# Calls that park only on a pipe, socket or terminal (never on a regular file).
ON_DESCRIPTOR = {
    0: "read",
    19: "readv",
    43: "accept",
    45: "recvfrom",
    47: "recvmsg",
    288: "accept4",
}
FUTEX_CMD_MASK = ~(128 | 256)  # FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME
LOCK_WAITS = (0, 6)  # FUTEX_WAIT (glibc's lll_lock), FUTEX_LOCK_PI

Candidate = tuple[int, int, int]  # (tid, syscall number or -1 when running, first argument)


def _syscall(pid: int, tid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/task/{tid}/syscall") as f:
            return f.read().split()
    except OSError:
        return []


def _parks_on(pid: int, fd: int) -> bool:
    try:
        mode = os.stat(f"/proc/{pid}/fd/{fd}").st_mode
    except OSError:
        return False
    return stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def parked(pid: int, tid: int, fields: list[str]) -> Candidate | None:
    """``(tid, nr, arg0)`` when the thread is parked in a call the injector may interrupt."""
    if not fields or not fields[0].lstrip("-").isdigit() or int(fields[0]) < 0:
        return None
    nr = int(fields[0])
    arg0 = int(fields[1], 16) if len(fields) > 2 else 0
    if nr in ON_DESCRIPTOR:
        return (tid, nr, arg0) if _parks_on(pid, arg0) else None
    if nr not in PARKED:
        return None
    if nr == FUTEX and int(fields[2], 16) & FUTEX_CMD_MASK in LOCK_WAITS:
        return None
    return tid, nr, arg0


def caught_signals(pid: int) -> int:
    """The signals ``pid`` has handlers for (SigCgt): a running thread that blocks one of
    them is most likely inside its handler, which may have interrupted it in malloc."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def candidates(pid: int) -> list[Candidate]:
    """The threads to try, best first (see the module's docstring)."""
    try:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return []
    others: list[Candidate] = []
    main: list[Candidate] = []
    running: list[Candidate] = []
    for tid in tids:
        fields = _syscall(pid, tid)
        found = parked(pid, tid, fields)
        if found is not None:
            (main if tid == pid else others).append(found)
        elif fields and (fields[0] == "running" or fields[0] == "-1"):
            entry = (tid, -1, 0)
            if tid == pid:
                running.insert(0, entry)
            else:
                running.append(entry)
    return others + main + running


__all__ = ["PARKED", "Candidate", "candidates", "caught_signals", "parked"]
