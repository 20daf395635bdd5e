"""Threads as processes: CPU time (``pthread_getcpuclockid``), kernel state, current frame."""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from vmtop.agent.tasks import frame_location
from vmtop.records import Location

_STATES = {"R": "running", "S": "sleeping", "D": "blocked", "T": "stopped", "Z": "zombie"}


@dataclass(frozen=True, slots=True)
class ThreadSample:
    thread: Any
    ident: int
    native_id: int | None
    name: str
    cpu: float | None  # seconds of CPU used by the thread so far
    state: str
    current: Location | None
    frame: FrameType | None
    waiting_on: str = ""


def thread_cpu(ident: int) -> float | None:
    """CPU seconds of the thread with ``threading.get_ident() == ident`` (None if unknown)."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, AttributeError, OverflowError):
        return None


def kernel_state(native_id: int | None) -> str:
    if native_id is None:
        return "-"
    try:
        with open(f"/proc/self/task/{native_id}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return "-"
    # "tid (comm) S ..." — comm may hold spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(b")") + 2 :]
    return _STATES.get(rest[:1].decode(errors="replace"), "-")


def sample_threads(frames: dict[int, FrameType] | None = None) -> list[ThreadSample]:
    """One sample per live Python thread (the agent's own threads excluded)."""
    if frames is None:
        frames = sys._current_frames()
    out = []
    for thread in threading.enumerate():
        if getattr(thread, "_vmtop_agent", False):
            continue
        ident = thread.ident
        if ident is None:
            continue
        frame = frames.get(ident)
        out.append(
            ThreadSample(
                thread=thread,
                ident=ident,
                native_id=thread.native_id,
                name=thread.name,
                cpu=thread_cpu(ident),
                state=kernel_state(thread.native_id),
                current=_user_location(frame),
                frame=frame,
                waiting_on=library_call(frame),
            )
        )
    return out


_STDLIB = sysconfig.get_paths()["stdlib"] + os.sep
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# vmtop's own code (the agent's hooks, e.g. the queue.Queue.get wrapper, and the engines) is
# never anyone's current function: it is skipped like the standard library.
# The bundled demo (vmtop/demo) is a program like any other.
VMTOP_DIRS = (os.path.join(_ROOT, "vmtop") + os.sep, os.path.join(_ROOT, "profilers") + os.sep)
_DEMO_DIR = os.path.join(_ROOT, "vmtop", "demo") + os.sep


def is_library_frame(frame: FrameType) -> bool:
    """Frames of the standard library (not site-packages): threading, queue, selectors..."""
    filename = frame.f_code.co_filename
    return filename.startswith(_STDLIB) and "site-packages" not in filename


def is_vmtop_frame(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    return filename.startswith(VMTOP_DIRS) and not filename.startswith(_DEMO_DIR)


def _user_location(frame: FrameType | None) -> Location | None:
    """Innermost frame outside the standard library and vmtop (else the innermost frame that
    is not vmtop's)."""
    f = frame
    while f is not None and (is_library_frame(f) or is_vmtop_frame(f)):
        f = f.f_back
    if f is None:
        f = frame
        while f is not None and is_vmtop_frame(f):
            f = f.f_back
    target = f if f is not None else frame
    return frame_location(target) if target is not None else None


def library_call(frame: FrameType | None) -> str:
    """The standard-library function the thread's own code is in (``Queue.get``; vmtop's
    wrappers between the two are skipped), or ''."""
    last = None
    f = frame
    while f is not None and (is_library_frame(f) or is_vmtop_frame(f)):
        if not is_vmtop_frame(f):
            last = f
        f = f.f_back
    if last is None or f is None:
        return ""
    return getattr(last.f_code, "co_qualname", last.f_code.co_name)


def stack_of(frame: FrameType | None, limit: int = 64) -> list[Location]:
    """Innermost-last stack of a thread's frame."""
    out: list[Location] = []
    while frame is not None and len(out) < limit:
        out.append(frame_location(frame))
        frame = frame.f_back
    out.reverse()
    return out
