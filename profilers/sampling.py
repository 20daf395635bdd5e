"""Sampled call stacks: pyinstrument's sampler turned into a :class:`~profilers.stacks.StackModel`.

pyinstrument records one frame list per sample (root first, ``function\\0file\\0firstline``
identifiers with per-sample attributes) and the wall time since the previous sample. We keep
exactly that as weighted stacks (unit "seconds"), cut the frames below the point where profiling
started, drop the profiler's own frames and ours, and map pyinstrument's ``[await]`` pseudo-frame
to ``<await>``: the time a coroutine spent suspended, as a child of the frame that awaited.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Collection
from types import FrameType

from pyinstrument import Profiler
from pyinstrument.session import Session

from profilers.stacks import Frame, StackModel

AWAIT = Frame("<await>")
OUT_OF_CONTEXT = Frame("<out-of-context>")

_PSEUDO = {"[await]": AWAIT, "[out-of-context]": OUT_OF_CONTEXT}
_PYINSTRUMENT_DIR = os.path.dirname(sys.modules[Profiler.__module__].__file__ or "") + os.sep
# Frames that only start a program (``runpy`` running a script as __main__) are cut at the root.
_LAUNCHER_FILES = ("<frozen runpy>", os.sep + "runpy.py")


class SampledRecorder:
    """Start/stop pyinstrument on this thread; every stopped segment is added to :attr:`model`.

    Frames from ``hide_files`` (the caller's plumbing: wrappers, runners) are left out.

    ``start(caller_frame)`` marks where profiling begins: frames from the thread's root down to
    ``caller_frame`` are cut from every sample (``caller_frame`` itself stays when
    ``keep_caller``, as for a ``with`` block whose own lines are part of the profile).
    """

    def __init__(self, interval: float = 0.001, hide_files: Collection[str] = ()) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
        self.interval = interval
        self.hide_files = frozenset(os.path.abspath(f) for f in hide_files)
        self.model = StackModel(unit="seconds")
        self.samples = 0
        self.duration = 0.0
        self._profiler: Profiler | None = None
        self._keep_caller = False
        self._started = 0.0

    def start(self, caller_frame: FrameType | None = None, keep_caller: bool = False) -> None:
        if self._profiler is not None:
            raise RuntimeError("this recorder is already running")
        frame = caller_frame if caller_frame is not None else sys._getframe(1)
        profiler = Profiler(interval=self.interval, async_mode="enabled")
        self._keep_caller = keep_caller
        self._started = time.perf_counter()
        profiler.start(caller_frame=frame)
        self._profiler = profiler

    def stop(self) -> None:
        profiler, self._profiler = self._profiler, None
        if profiler is None:
            raise RuntimeError("this recorder is not running")
        session = profiler.stop()
        self.duration += time.perf_counter() - self._started
        self.samples += session.sample_count
        self.model.merge(
            session_to_model(session, keep_caller=self._keep_caller, hide_files=self.hide_files)
        )


def session_to_model(
    session: Session, keep_caller: bool = False, hide_files: Collection[str] = ()
) -> StackModel:
    """Weighted stacks (seconds) of a pyinstrument session, below its start call stack."""
    start = [_identifier(info) for info in session.start_call_stack]
    cut = len(start) - 1 if keep_caller else len(start)
    model = StackModel(unit="seconds")
    cache: dict[str, Frame | None] = {}
    for infos, seconds in session.frame_records:
        if len(infos) >= len(start) and all(
            _identifier(infos[i]) == start[i] for i in range(len(start))
        ):
            infos = infos[max(cut, 0) :]
        else:
            infos = infos[1:]  # another root: drop only the thread pseudo-frame
        frames: list[Frame] = []
        own_sample = False
        for info in infos:
            frame = cache.get(info, _MISSING)
            if frame is _MISSING:
                frame = cache[info] = _frame(info, hide_files)
            if frame is None:
                continue
            if frame is _PROFILER:
                own_sample = True  # the profiler stopping or starting itself: not the user's time
                break
            if not frames and frame.file.endswith(_LAUNCHER_FILES):
                continue
            frames.append(frame)
        if not own_sample:
            model.add(frames, seconds)
    return model


_MISSING = Frame("<missing>")
_PROFILER = Frame("<profiler>")


def _identifier(info: str) -> str:
    return info.partition("\x01")[0]


def _frame(info: str, hide_files: Collection[str]) -> Frame | None:
    """The model frame of one pyinstrument frame info; None to drop it, _PROFILER for its own."""
    identifier, _, attributes = info.partition("\x01")
    pseudo = _PSEUDO.get(identifier)
    if pseudo is not None:
        return pseudo
    parts = identifier.split("\x00")
    function = parts[0]
    file = parts[1] if len(parts) > 1 else ""
    line = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
    if file == "<thread>":
        return None
    if file.startswith(_PYINSTRUMENT_DIR):
        return _PROFILER
    if file in hide_files:
        return None
    for attribute in attributes.split("\x01") if attributes else ():
        if attribute.startswith("c"):  # class name of a method's self/cls
            function = f"{attribute[1:]}.{function}"
            break
    if file == "<built-in>":
        file, line = "", 0
    return Frame(function, file, line)
