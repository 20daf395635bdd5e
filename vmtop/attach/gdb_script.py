"""Runs INSIDE gdb (``gdb -batch -p PID -x gdb_script.py``): queue the bootstrap in the target.

Never imported by vmtop itself: :mod:`vmtop.attach.gdb_inject` starts gdb on this file and
passes its parameters as JSON in ``$VMTOP_GDB_PARAMS``. Every step is reported on stdout as one
``VMTOP:{json}`` line. Why each step is safe is argued in docs/attach.md; in short:

1. **Safe point.** We never call into the interpreter where gdb happened to stop a thread (it
   may hold the GIL's internal mutex or the pending-call lock: that is how
   ``PyGILState_Ensure`` + ``PyRun_SimpleString`` hung targets). We set breakpoints at the
   *entry* of functions that are never called with those locks held (``PyEval_SaveThread``,
   ``PyEval_RestoreThread``, ``PyErr_CheckSignals``, ``PyObject_Malloc``), continue, and act on
   the first thread that stops there.
2. **Queue.** On that thread: ``mmap`` one anonymous page (a system-call wrapper: no locks, no
   malloc), write the bootstrap source into it, and ``Py_AddPendingCall(PyRun_SimpleString,
   page)``. The interpreter itself runs pending calls on the main thread, holding the GIL, at
   its next eval-breaker check: the place where Python signal handlers run.
3. **Wake.** A main thread blocked in a system call (an idle event loop in ``epoll_wait``, a
   ``time.sleep``) checks nothing until it wakes. We make the blocked call return ``EINTR``
   (x86-64: the kernel's restart codes in ``rax`` become ``-EINTR``) -- exactly what a signal
   with a handler would do, and every CPython wrapper retries after EINTR (PEP 475). Those
   retry loops call ``PyErr_CheckSignals()`` first; when the main thread enters it, we point
   its program counter at ``Py_MakePendingCalls`` (same signature ``int(void)``, documented to
   run from the main thread with the GIL held, and it handles signals too), so the queued
   bootstrap runs right there and the wrapper then resumes its wait.
4. **Detach** once ``PyRun_SimpleString`` is entered (the bootstrap is running) or the budget
   is spent. A timer thread inside gdb sends the target a signal that gdb intercepts and
   never delivers (``handle SIG stop nopass``) to regain control while the target runs; it is
   stopped before detaching, so no stray signal reaches the target.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import gdb

P: dict[str, Any] = json.loads(os.environ["VMTOP_GDB_PARAMS"])
PID = int(P["pid"])

# Kernel restart codes seen in rax when a blocked system call was interrupted by the attach.
# ERESTARTNOINTR (-513) must restart: left alone.
RESTART_CODES = (-512, -514, -516)
EINTR = -4
FUTEX = 202  # x86-64: glibc retries an interrupted futex wait by itself


def report(tag: str, **data: Any) -> None:
    gdb.write("VMTOP:" + json.dumps({"tag": tag, **data}) + "\n")
    gdb.flush()


class Abort(Exception):
    pass


class Ticker:
    """Interrupts ``continue`` every ``interval`` s with a signal gdb swallows (see above)."""

    def __init__(self, signal_number: int, interval: float, abort_file: str) -> None:
        self.signal_number = signal_number
        self.interval = interval
        self.abort_file = abort_file
        self.active = False
        self.aborted = False
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(self.interval):
            with self.lock:
                if self.abort_file and os.path.exists(self.abort_file):
                    self.aborted = True
                if self.active:
                    try:
                        os.kill(PID, self.signal_number)
                    except OSError:
                        pass

    def stop(self) -> None:
        with self.lock:
            self.active = False
            self.done.set()


def symbol(name: str) -> int:
    try:
        return int(gdb.parse_and_eval(f"(unsigned long)&{name}"))
    except gdb.error:
        return 0


def read_u64(address: int) -> int:
    data = bytes(gdb.selected_inferior().read_memory(address, 8))
    return int.from_bytes(data, "little")


def main_thread() -> Any:
    for thread in gdb.selected_inferior().threads():
        if thread.ptid[1] == PID:
            return thread
    return None


def in_syscall(thread: Any) -> tuple[int, int]:
    """(syscall number, rax) of a thread stopped while *blocked* in a system call, else
    (-1, 0). x86-64 only: elsewhere every thread counts as running."""
    if not X86_64:
        return -1, 0
    thread.switch()
    nr = int(gdb.parse_and_eval("$orig_rax"))
    rax = int(gdb.parse_and_eval("$rax"))
    if nr < 0 or (rax not in RESTART_CODES and rax != EINTR):
        return -1, 0  # in user space, or at a system-call boundary: not blocked
    return nr, rax


def blocked_thread(main: Any) -> Any:
    """A thread stopped inside a system call (the main one first), or None.

    Such a thread is between two C calls of the interpreter: it holds neither the pending-call
    lock nor the GIL's internal mutex (neither is held across a blocking call), so calling
    mmap and Py_AddPendingCall on it cannot deadlock.
    """
    for thread in [main] + [t for t in gdb.selected_inferior().threads() if t is not main]:
        if thread.is_valid() and in_syscall(thread)[0] >= 0:
            return thread
    return None


def wake(thread: Any) -> str:
    """Make the thread's interrupted system call return EINTR; say what it was doing."""
    nr, rax = in_syscall(thread)
    if nr < 0:
        return "running"
    if rax in RESTART_CODES:
        gdb.execute(f"set var $rax = {EINTR}")
        return f"syscall {nr} (woken)"
    if rax == EINTR:
        return f"syscall {nr} (woken)"
    return f"syscall {nr}"


LAST_STOP: list[Any] = []


def on_stop(event: Any) -> None:
    LAST_STOP.append(event)


def resume(ticker: Ticker) -> Any:
    """Continue until the next stop; return the stop event (None if the target exited)."""
    LAST_STOP.clear()
    with ticker.lock:
        ticker.active = True
    try:
        gdb.execute("continue", to_string=True)
    finally:
        with ticker.lock:
            ticker.active = False
    if not gdb.selected_inferior().pid:
        raise Abort("the target exited")
    return LAST_STOP[-1] if LAST_STOP else None


def hit(event: Any, breakpoints: list[Any]) -> Any:
    if event is not None and hasattr(event, "breakpoints"):
        for bp in event.breakpoints:
            if bp in breakpoints:
                return bp
    return None


def delete(breakpoints: list[Any]) -> None:
    for bp in breakpoints:
        if bp.is_valid():
            bp.delete()
    breakpoints.clear()


SETTINGS = (
    "set pagination off",
    "set confirm off",
    "set unwindonsignal on",  # a signal during one of our calls unwinds it, state restored
    "set print thread-events off",
    "handle all nostop noprint pass",
    "handle SIGINT nostop noprint pass",
)
SYMBOLS = (
    "Py_AddPendingCall",
    "PyRun_SimpleString",
    "Py_MakePendingCalls",
    "PyErr_CheckSignals",
    "PyEval_SaveThread",
    "PyEval_RestoreThread",
    "Py_Version",
    "mmap",
)


def check_target() -> dict[str, int]:
    """Addresses of what we need; refuse anything but the CPython version we expect."""
    addr = {name: symbol(name) for name in (*SYMBOLS, "PyObject_Malloc")}
    missing = [n for n in SYMBOLS if not addr[n]]
    if missing:
        raise Abort(
            "not a CPython process, or its symbols are hidden: gdb cannot find "
            + ", ".join(missing)
        )
    version = read_u64(addr["Py_Version"]) & 0xFFFFFFFF
    found = ((version >> 24) & 0xFF, (version >> 16) & 0xFF)
    if list(found) != list(P["version"]):
        raise Abort(
            f"the process runs Python {found[0]}.{found[1]}, expected "
            f"{P['version'][0]}.{P['version'][1]}: refusing to touch it"
        )
    return addr


def safe_thread(main: Any, addr: dict[str, int], ticker: Ticker, deadline: float) -> Any:
    """A thread at a point where mmap and Py_AddPendingCall cannot deadlock (step 1)."""
    thread = blocked_thread(main)
    if thread is not None:
        return thread
    breakpoints = [
        gdb.Breakpoint(f"*{addr[name]:#x}", internal=True)
        for name in ("PyEval_SaveThread", "PyEval_RestoreThread", "PyErr_CheckSignals")
    ]
    if addr["PyObject_Malloc"]:
        breakpoints.append(gdb.Breakpoint(f"*{addr['PyObject_Malloc']:#x}", internal=True))
    try:
        while hit(resume(ticker), breakpoints) is None:
            if ticker.aborted:
                raise Abort("interrupted; nothing was changed")
            if time.monotonic() > deadline:
                raise Abort(
                    "no thread reached a safe point in time (all of them run native code); "
                    "nothing was changed"
                )
            wake(main)
    finally:
        delete(breakpoints)
    return gdb.selected_thread()


def queue(thread: Any, addr: dict[str, int]) -> None:
    """mmap a page, copy the bootstrap into it, Py_AddPendingCall(PyRun_SimpleString, page)."""
    thread.switch()
    source = P["source"].encode() + b"\0"
    size = (len(source) + 4095) // 4096 * 4096
    mmap = f"((void *(*)(void *, unsigned long, int, int, int, long)){addr['mmap']:#x})"
    page = int(gdb.parse_and_eval(f"{mmap}(0, {size}, 3, 0x22, -1, 0)")) & (2**64 - 1)
    if page in (0, 2**64 - 1):
        raise Abort("mmap failed in the target; nothing was changed")
    gdb.selected_inferior().write_memory(page, source)
    add = f"((int (*)(void *, void *)){addr['Py_AddPendingCall']:#x})"
    rc = int(
        gdb.parse_and_eval(f"{add}((void *){addr['PyRun_SimpleString']:#x}, (void *){page:#x})")
    )
    if rc != 0:
        raise Abort("the target's pending-call queue is full; try again")
    report("queued", thread=thread.ptid[1])


def wake_until_started(main: Any, addr: dict[str, int], ticker: Ticker, deadline: float) -> None:
    """Step 3: keep waking the main thread until the bootstrap runs (or time is up)."""
    wake_mode = P["mode"] == "wake"
    # "queue": PyErr_CheckSignals becomes Py_MakePendingCalls. "wake" (3.14+, the script was
    # scheduled by sys.remote_exec): it becomes PyRun_SimpleString("") -- empty code whose
    # first instruction checks the eval breaker; "" is the high byte of Py_Version.
    redirect = addr["PyRun_SimpleString"] if wake_mode else addr["Py_MakePendingCalls"]
    redirected = 0
    thread = gdb.selected_thread()
    at_signals = int(gdb.parse_and_eval("$pc")) == addr["PyErr_CheckSignals"]
    if thread.ptid[1] == PID and at_signals and not wake_mode:
        # The main thread is entering PyErr_CheckSignals right now: run the calls there.
        gdb.execute(f"set var $pc = {redirect:#x}")
        redirected += 1
    breakpoints = []
    start_bp = None
    if not wake_mode:
        start_bp = gdb.Breakpoint(f"*{addr['PyRun_SimpleString']:#x}", internal=True)
        breakpoints.append(start_bp)
    # Only the main thread's PyErr_CheckSignals matters, and only right after we woke it from
    # a system call: other threads (the regex engine checks signals every few thousand steps)
    # must not stop there, so the breakpoint is thread-specific and enabled only when needed.
    signals_bp = gdb.Breakpoint(f"*{addr['PyErr_CheckSignals']:#x}", internal=True)
    signals_bp.thread = main.num
    breakpoints.append(signals_bp)
    last = ""
    try:
        while True:
            state = wake(main)
            signals_bp.enabled = state.endswith("(woken)") and not state.startswith(
                f"syscall {FUTEX} "
            )
            if state != last:
                report("main", state=state)
                last = state
            where = hit(resume(ticker), breakpoints)
            if ticker.aborted:
                report("left-queued", reason="interrupted")
                return
            # The marker covers a bootstrap that ran while our own calls were running (other
            # threads run during a gdb call), before start_bp existed.
            if (start_bp is not None and where is start_bp) or os.path.exists(P["started_file"]):
                report("started", redirected=redirected)
                return
            if where is signals_bp and gdb.selected_thread().ptid[1] == PID:
                if wake_mode:
                    gdb.execute(f"set var $rdi = {addr['Py_Version'] + 7:#x}")
                gdb.execute(f"set var $pc = {redirect:#x}")
                redirected += 1
            if time.monotonic() > deadline:
                report("left-queued", reason="timeout")
                return
    finally:
        delete(breakpoints)


def run() -> None:
    for cmd in SETTINGS:
        gdb.execute(cmd, to_string=True)
    # "stop" implies "print" (and "noprint" would imply "nostop"): the printing goes to the
    # captured output of ``continue``.
    gdb.execute(f"handle {P['tick_signal_name']} stop print nopass", to_string=True)
    addr = check_target()
    main = main_thread()
    if main is None:
        raise Abort("the process has no main thread any more")
    report("attached", threads=len(gdb.selected_inferior().threads()))
    ticker = Ticker(int(P["tick_signal"]), float(P["tick_interval"]), str(P["abort_file"]))
    deadline = time.monotonic() + float(P["budget"])
    try:
        if P["mode"] != "wake":
            thread = safe_thread(main, addr, ticker, deadline)
            report("main", state=wake(main))
            queue(thread, addr)
        wake_until_started(main, addr, ticker, deadline)
    finally:
        ticker.stop()


X86_64 = False


def main() -> None:
    global X86_64
    try:
        arch = gdb.selected_inferior().architecture().name()
    except Exception:
        arch = ""
    X86_64 = arch == "i386:x86-64"
    gdb.events.stop.connect(on_stop)
    try:
        run()
    except Abort as exc:
        report("error", message=str(exc))
    except gdb.error as exc:
        report("error", message=f"gdb: {exc}")
    except Exception as exc:
        report("error", message=f"{type(exc).__name__}: {exc}")
    finally:
        try:
            if gdb.selected_inferior().pid:
                gdb.execute("detach", to_string=True)
                report("detached")
        except gdb.error as exc:
            report("error", message=f"gdb detach: {exc}")


main()
