"""``vmtop.profile``: profile one call, a ``with`` block or every call of a decorated function.

Sampled (default, pyinstrument) -> :class:`~profilers.profile_report.SampledProfile`;
``calls=True`` (cProfile) -> :class:`~profilers.calls_report.CallsProfile`::

    p = profile(fn, *args, **kwargs)              # runs fn now; p.return_value is its result
    p = profile(fn, *args, calls=True)            # CNT / ACC / OWN with callers and callees
    with profile() as p:                          # p is the report once the block exits
        ...
    @profile                                      # or @profile(interval=..., calls=...):
    def handler(...): ...                         # each call prints its report to stderr and
                                                  # keeps it at handler.last_profile

Coroutine functions (or functions returning a coroutine) are run with ``asyncio.run`` (on a
fresh thread when this thread already runs a loop, as in Jupyter); time spent awaiting is
attributed to the coroutine that awaited (pyinstrument's async mode, ``<await>`` frames).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Collection, Coroutine
from types import FrameType
from typing import Any, Protocol

from profilers.calling import run_to_end
from profilers.calls import CallsRecorder
from profilers.calls_report import CallsProfile
from profilers.profile_report import SampledProfile
from profilers.report import Report
from profilers.sampling import SampledRecorder
from profilers.stacks import StackModel
from profilers.units import short_path

__all__ = ["Profile", "profile", "run_profile"]

DEFAULT_INTERVAL = 0.001
_HERE = os.path.dirname(os.path.abspath(__file__))
# Frames of these files are the profiler's plumbing, never the user's work.
ENGINE_FILES = frozenset(
    os.path.join(_HERE, name) for name in ("profile.py", "sampling.py", "calls.py")
)


class Recorder(Protocol):
    duration: float

    def start(self, caller_frame: FrameType | None = None, keep_caller: bool = False) -> None: ...

    def stop(self) -> None: ...


def profile(
    fn: Callable[..., Any] | None = None,
    /,
    *args: Any,
    interval: float = DEFAULT_INTERVAL,
    calls: bool = False,
    **kwargs: Any,
) -> Any:
    """Profile ``fn(*args, **kwargs)`` now and return the report; see the module docstring.

    ``interval`` is the sampling period in seconds (sampled mode); ``calls=True`` counts every
    call with cProfile instead. Every other keyword argument goes to ``fn``. Without ``fn``,
    returns a :class:`Profile` to use as ``with`` block or decorator.
    """
    if fn is None:
        if args or kwargs:
            raise TypeError("vmtop.profile() without a function takes only interval= and calls=")
        return Profile(interval=interval, calls=calls)
    if not callable(fn):
        raise TypeError(f"vmtop.profile needs a callable, not {type(fn).__name__}")
    if not args and not kwargs and _applied_as_decorator(fn, sys._getframe(1)):
        return Profile(interval=interval, calls=calls)(fn)
    return run_profile(fn, args, kwargs, interval=interval, calls=calls)


def run_profile(
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    interval: float = DEFAULT_INTERVAL,
    calls: bool = False,
    hide_files: Collection[str] = (),
    name: str | None = None,
) -> SampledProfile | CallsProfile:
    """Run ``fn`` under the profiler and return the report (exceptions from ``fn`` propagate).

    ``hide_files``: more files whose frames are plumbing (the CLI's runner, for instance).
    """
    recorder = new_recorder(calls, interval, hide_files)
    value = call_under(recorder, fn, args, kwargs or {})
    return build_report(recorder, name or _name(fn), value)


def new_recorder(
    calls: bool, interval: float = DEFAULT_INTERVAL, hide_files: Collection[str] = ()
) -> SampledRecorder | CallsRecorder:
    hidden = ENGINE_FILES | {os.path.abspath(f) for f in hide_files}
    if calls:
        return CallsRecorder(hide_files=hidden)
    return SampledRecorder(interval=interval, hide_files=hidden)


def call_under(
    recorder: Recorder, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Call ``fn`` with ``recorder`` running; a coroutine is run to completion by asyncio."""
    if inspect.iscoroutinefunction(fn):
        return _run_coroutine(recorder, lambda: fn(*args, **kwargs))
    recorder.start(sys._getframe())
    try:
        value = fn(*args, **kwargs)
    finally:
        recorder.stop()
    if inspect.iscoroutine(value):
        coroutine = value
        return _run_coroutine(recorder, lambda: coroutine)
    return value


def build_report(
    recorder: SampledRecorder | CallsRecorder, name: str, value: Any
) -> SampledProfile | CallsProfile:
    if isinstance(recorder, CallsRecorder):
        return CallsProfile(recorder.stats(), recorder.duration, name=name, return_value=value)
    return SampledProfile(
        recorder.model,
        duration=recorder.duration,
        samples=recorder.samples,
        interval=recorder.interval,
        name=name,
        return_value=value,
    )


class Profile(Report):
    """``with vmtop.profile() as p:`` and ``@vmtop.profile(...)``.

    As a context manager, ``p`` *becomes* the report when the block exits: ``p`` shows it,
    ``p.save(...)``, ``p.stacks``, ``p.table()`` (calls mode) work on it, and ``p.report`` is the
    underlying :class:`SampledProfile` / :class:`CallsProfile`. The block's own lines stay in
    the profile as the root frame. As a decorator, each call of the function is profiled; the
    report is printed to stderr and kept at ``function.last_profile``.
    """

    def __init__(self, interval: float = DEFAULT_INTERVAL, calls: bool = False) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
        self.interval = interval
        self.calls = calls
        self.report: SampledProfile | CallsProfile | None = None
        self._recorder: SampledRecorder | CallsRecorder | None = None
        self._where = "with block"

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> Profile:
        if self._recorder is not None:
            raise RuntimeError("this profile is already running")
        caller = sys._getframe(1)
        self._where = f"with block at {short_path(caller.f_code.co_filename)}:{caller.f_lineno}"
        self.report = None
        recorder = new_recorder(self.calls, self.interval)
        recorder.start(caller, keep_caller=True)
        self._recorder = recorder
        return self

    def __exit__(self, *exc_info: object) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return
        recorder.stop()
        self.report = build_report(recorder, self._where, None)

    # -- decorator -----------------------------------------------------------------------------
    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        name = _name(fn)
        interval, calls = self.interval, self.calls

        def publish(wrapper: Callable[..., Any], report: SampledProfile | CallsProfile) -> None:
            wrapper.last_profile = report  # type: ignore[attr-defined]
            from rich.console import Console

            Console(file=sys.stderr).print(report)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                recorder = new_recorder(calls, interval)
                value = None
                recorder.start(sys._getframe())
                try:
                    value = await fn(*args, **kwargs)
                    return value
                finally:
                    recorder.stop()
                    publish(async_wrapper, build_report(recorder, name, value))

            async_wrapper.last_profile = None  # type: ignore[attr-defined]
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            recorder = new_recorder(calls, interval)
            value = None
            try:
                value = call_under(recorder, fn, args, kwargs)
                return value
            finally:
                publish(wrapper, build_report(recorder, name, value))

        wrapper.last_profile = None  # type: ignore[attr-defined]
        return wrapper

    # -- the report, once the block is done -------------------------------------------------------
    def _done(self) -> SampledProfile | CallsProfile:
        if self.report is None:
            state = "still running" if self._recorder is not None else "not run yet"
            raise RuntimeError(f"no report: the profile is {state} (use it as `with` block)")
        return self.report

    @property
    def stacks(self) -> StackModel:
        return self._done().stacks

    def save(self, path: str | os.PathLike[str], title: str | None = None) -> str:
        return self._done().save(path, title=title)

    def to_dict(self) -> dict[str, Any]:
        return self._done().to_dict()

    def __rich__(self) -> Any:
        if self.report is None:
            mode = "calls" if self.calls else "sampled"
            state = "running" if self._recorder is not None else "not started"
            return f"<vmtop profile ({mode}): {state}>"
        return self.report.__rich__()

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes Profile lacks: return_value, duration, table(), ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._done(), name)


def _run_coroutine(recorder: Recorder, make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    # The recorder starts inside the coroutine's task, so that pyinstrument's async mode can
    # tell "this task awaits" from "the loop runs something else".
    async def main() -> Any:
        recorder.start(sys._getframe())
        try:
            return await make()
        finally:
            recorder.stop()

    return run_to_end(main, name="vmtop-profile")


def _applied_as_decorator(fn: Callable[..., Any], caller: FrameType) -> bool:
    """True when ``profile(fn)`` is ``@profile`` over ``def fn``, not a call to profile fn now.

    A decorated function's ``co_firstlineno`` is its first decorator line, and decorators are
    applied on their own lines, before the first line of the body: a call from that range of
    the same file is a decorator application (this works without source, in a REPL too).
    """
    if not inspect.isfunction(fn) or fn.__name__ == "<lambda>":
        return False
    code = fn.__code__
    if caller.f_code.co_filename != code.co_filename:
        return False
    body = [
        line for _, _, line in code.co_lines() if line is not None and line > code.co_firstlineno
    ]
    first_body_line = min(body) if body else code.co_firstlineno + 1
    return code.co_firstlineno <= caller.f_lineno < first_body_line


def _name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return str(name) if name else repr(fn)
