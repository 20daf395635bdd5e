"""Pykka threading actors as processes: one row per actor (an actor = a thread + an inbox).

A ``pykka.ThreadingActor`` runs ``Actor._actor_loop`` on a thread of its own and takes its
messages from ``actor_inbox`` (a ``queue.Queue``). Its row replaces its thread's row (the
adapter claims the thread) and reads:

- name: the actor's class and URN (``Counter urn:uuid:…``), kind ``thread``;
- REDS: messages the actor took from its inbox (``MailboxTracker.thread_gets``: items its
  thread took from a ``queue.Queue`` since the attach); TIME: the thread's CPU time;
- MAILBOX: ``actor_inbox.qsize()``;
- STATE: ``waiting`` (in its inbox's ``get``), ``handling`` (a message), ``starting``
  (``on_start``), ``stopped`` (``actor_stopped`` is set: ``on_stop`` and the inbox teardown
  may still run until the thread ends and the row goes);
- CURRENT: the innermost frame of the actor's own code (never pykka's, the standard
  library's or vmtop's), and the library call it is in (``ThreadingFuture.get``,
  ``Condition.wait``).

Read from the agent's thread with the GIL held: ``sys._current_frames()`` and the loop
frame's ``envelope`` local (the message being handled). Nothing is installed in pykka.
"""

from __future__ import annotations

import os
import queue
import sys
import sysconfig
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from vmtop.agent.memory import estimate
from vmtop.agent.tasks import frame_location
from vmtop.agent.threads import kernel_state, thread_cpu
from vmtop.records import Location, ProcessRow

if TYPE_CHECKING:
    from vmtop.agent.adapters import AdapterRows
    from vmtop.agent.collector import Collector

KEY = "actor"  # row keys are "actor:<native thread id>"
STACK_LIMIT = 64
INBOX_PREVIEW = 10
_STDLIB = sysconfig.get_paths()["stdlib"] + os.sep
_VMTOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_QUEUE_GET = queue.Queue.get.__code__
_WAIT_NAMES = frozenset({"get", "is_set"})  # the loop's own calls between two messages


def _pykka() -> Any:
    return sys.modules.get("pykka")


class ActorView:
    """One actor as seen now: its thread, frames, state and the message it handles."""

    def __init__(self, actor: Any, thread: threading.Thread, frame: FrameType | None) -> None:
        self.actor = actor
        self.thread = thread
        self.ident = thread.ident or 0
        self.native_id = thread.native_id or self.ident
        self.frames = _stack(frame)  # innermost first
        self.state, self.envelope = _state(actor, self.frames)

    @property
    def key(self) -> str:
        return f"{KEY}:{self.native_id}"

    @property
    def name(self) -> str:
        return f"{type(self.actor).__name__} {getattr(self.actor, 'actor_urn', '?')}"

    def inbox(self) -> Any:
        return getattr(self.actor, "actor_inbox", None)

    def inbox_length(self) -> int | None:
        try:
            return int(self.inbox().qsize())
        except Exception:
            return None

    def current(self) -> tuple[Location | None, str]:
        """The innermost frame of the actor's own code, and the library call it is in."""
        for i, f in enumerate(self.frames):
            if not _foreign(f):
                call = self.frames[i - 1] if i else None
                return frame_location(f), _qualname(call) if call is not None else ""
        return None, "inbox" if self.state == "waiting" else ""

    def message(self) -> Any:
        return getattr(self.envelope, "message", None) if self.state == "handling" else None


def actors(frames: dict[int, FrameType] | None = None) -> list[ActorView]:
    """Every live pykka threading actor, from the threads that run an actor loop."""
    pykka = _pykka()
    if pykka is None:
        return []
    base = getattr(pykka, "Actor", None)
    if base is None:
        return []
    if frames is None:
        frames = sys._current_frames()
    out = []
    for thread in threading.enumerate():
        target = getattr(thread, "_target", None)  # Thread(target=actor._actor_loop)
        actor = getattr(target, "__self__", None)
        if not isinstance(actor, base) or thread.ident is None:
            continue
        out.append(ActorView(actor, thread, frames.get(thread.ident)))
    return out


class PykkaAdapter:
    """The :class:`~vmtop.agent.adapters.RuntimeAdapter` for pykka (threading actors)."""

    name = "pykka"
    module = "pykka"

    def attach(self) -> None:
        pass  # nothing to install: messages are counted by the queue.Queue.get hook

    def detach(self) -> None:
        pass

    def snapshot(self, collector: Collector, state: dict[str, Any], req: Any) -> AdapterRows:
        from vmtop.agent.adapters import AdapterRows

        out = AdapterRows()
        views = actors()
        out.claimed = {v.ident for v in views}
        if "thread" not in req.kinds:
            return out
        prev: dict[int, tuple[float | None, int | None]] = state.setdefault("prev", {})
        hello: dict[int, float] = state.get("threads_cpu", {})  # thread CPU at the hello
        hello_gets: dict[int, int] = state.get("threads_gets", {})  # and its queue gets
        gets_of = getattr(collector.mailboxes, "thread_gets", None)
        new_prev = {}
        for v in views:
            cpu = thread_cpu(v.ident)
            gets = gets_of(v.ident) if gets_of is not None else None
            new_prev[v.ident] = (cpu, gets)
            if req.filter and req.filter not in v.name.lower():
                continue
            out.matched += 1
            cpu0, gets0 = prev.get(v.ident, (None, None))
            if cpu0 is None:  # first seen: its interval starts at the client's hello (or
                cpu0 = hello.get(v.ident, 0.0)  # at the thread's start, if it is younger)
            if gets0 is None:
                gets0 = hello_gets.get(v.ident, 0)
            out.rows.append(_row(v, cpu, cpu0, gets, gets0, req.memory))
        state["prev"] = new_prev
        return out

    def detail(self, collector: Collector, key: str) -> dict[str, Any] | None:
        kind, _, ident = key.partition(":")
        if kind != KEY:
            return None
        for v in actors():
            if str(v.native_id) == ident:
                return actor_detail(collector, v)
        from vmtop.agent.detail import NotFound

        raise NotFound(f"no actor {key} (stopped?)")


def _row(
    v: ActorView,
    cpu: float | None,
    cpu0: float,
    gets: int | None,
    gets0: int,
    memory: bool,
) -> ProcessRow:
    current, call = v.current()
    size = None
    if memory:
        try:
            inbox = v.inbox()
            size = estimate([inbox] if inbox is not None else [], list(reversed(v.frames)))
        except Exception:
            size = None
    notes = ["pykka actor: REDS = messages taken from its inbox, TIME = thread CPU seconds"]
    if gets is None:
        notes.append("messages not counted (no dequeue counter in this agent)")
    return ProcessRow(
        key=v.key,
        kind="thread",
        id=str(v.native_id),
        name=v.name,
        state=v.state,
        reductions=None if gets is None else gets - gets0,
        reductions_total=gets,
        time=None if cpu is None else max(0.0, cpu - cpu0),
        time_total=cpu,
        mailbox=v.inbox_length(),
        memory=size,
        current=current,
        waiting_on=call,
        coro=type(v.actor).__qualname__,
        runtime="pykka",
        notes=tuple(notes),
    )


def actor_detail(collector: Collector, v: ActorView) -> dict[str, Any]:
    """The thread detail of the actor's thread, plus the message it handles and its inbox."""
    from vmtop.agent import memory
    from vmtop.agent.detail import frame_info, safe_repr

    stack = [frame_info(f, with_locals=i < 8) for i, f in enumerate(v.frames)]
    stack.reverse()
    inbox = v.inbox()
    try:
        items = list(getattr(inbox, "queue", ()))[:INBOX_PREVIEW]
    except Exception:
        items = []
    handling = v.message()
    gets_of = getattr(collector.mailboxes, "thread_gets", None)
    return {
        "key": v.key,
        "kind": "thread",
        "runtime": "pykka",
        "name": v.name,
        "actor_class": f"{type(v.actor).__module__}.{type(v.actor).__qualname__}",
        "urn": getattr(v.actor, "actor_urn", ""),
        "state": v.state,
        "kernel_state": kernel_state(v.thread.native_id),
        "cpu": thread_cpu(v.ident),
        "daemon": v.thread.daemon,
        "messages_total": gets_of(v.ident) if gets_of is not None else None,
        "handling": safe_repr(handling) if v.state == "handling" else None,
        "stack": stack,
        "mailbox": [
            {
                "queue": f"inbox of {v.name}",
                "length": v.inbox_length(),
                "maxsize": getattr(inbox, "maxsize", None),
                "putters": 0,
                "preview": [safe_repr(getattr(e, "message", e)) for e in items],
            }
        ],
        "memory": memory.estimate([inbox] if inbox is not None else [], list(reversed(v.frames))),
        "memory_note": memory.NOTE,
    }


def _stack(frame: FrameType | None) -> list[FrameType]:
    out: list[FrameType] = []
    while frame is not None and len(out) < STACK_LIMIT:
        out.append(frame)
        frame = frame.f_back
    return out


def _loop_codes() -> dict[Any, str]:
    """Code objects of pykka's actor loop (4.x splits it in three; 3.x has one)."""
    base = getattr(_pykka(), "Actor", None)
    out = {}
    for name, phase in (
        ("_actor_loop_running", "loop"),
        ("_actor_loop_setup", "starting"),
        ("_actor_loop_teardown", "stopping"),
        ("_actor_loop", "loop"),
    ):
        fn = getattr(base, name, None)
        code = getattr(fn, "__code__", None)
        if code is not None:
            out[code] = phase
    return out


def _state(actor: Any, frames: list[FrameType]) -> tuple[str, Any]:
    """(state, the envelope being handled or None) from the thread's frames, innermost first."""
    stopped = getattr(actor, "actor_stopped", None)
    if stopped is not None and stopped.is_set():
        return "stopped", None  # its on_stop() and inbox teardown may still run
    codes = _loop_codes()
    for i, f in enumerate(frames):
        phase = codes.get(f.f_code)
        if phase is None:
            continue
        if phase != "loop":
            return phase, None
        callee = frames[i - 1] if i else None
        if callee is None or _waits(callee):
            return "waiting", None
        try:
            envelope = f.f_locals.get("envelope")
        except Exception:
            envelope = None
        return "handling", envelope
    return "-", None


def _waits(callee: FrameType) -> bool:
    """The loop frame's callee is its inbox's ``get`` (or vmtop's hook around it), or the
    ``actor_stopped.is_set()`` check between two messages."""
    code = callee.f_code
    return code is _QUEUE_GET or (
        code.co_name in _WAIT_NAMES
        and (code.co_filename.startswith(_STDLIB) or code.co_filename.startswith(_VMTOP))
    )


def _foreign(frame: FrameType) -> bool:
    """Frames that are not the actor's own code: the standard library, pykka, vmtop."""
    filename = frame.f_code.co_filename
    if filename.startswith(_VMTOP):
        return True
    pykka = _pykka()
    pykka_dir = os.path.dirname(getattr(pykka, "__file__", "") or "") + os.sep
    if pykka_dir != os.sep and filename.startswith(pykka_dir):
        return True
    return filename.startswith(_STDLIB) and "site-packages" not in filename


def _qualname(frame: FrameType) -> str:
    return str(getattr(frame.f_code, "co_qualname", frame.f_code.co_name))
