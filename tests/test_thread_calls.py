"""ThreadCalls (profilers/calls.py): cProfile with one call stack per thread on 3.12+.

Plain cProfile on 3.12+ keeps one stack of open calls for every thread (sys.monitoring), so
two threads that call functions at the same time get each other's functions as callers. The
threads here take turns on a pair of events, so their calls interleave in a known order.
"""

from __future__ import annotations

import cProfile
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from profilers import calls

pytestmark = [
    pytest.mark.internals,
    pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring exists from 3.12"),
]

ROUNDS = 200


def leaf() -> int:
    return 1


def in_main(turn: threading.Event, back: threading.Event) -> int:
    # Opens a call, lets the worker run its calls inside it, then calls leaf() itself.
    turn.set()
    back.wait()
    back.clear()
    return leaf()


def in_worker() -> int:
    return leaf() + leaf()


def worker(turn: threading.Event, back: threading.Event, rounds: int) -> None:
    for _ in range(rounds):
        turn.wait()
        turn.clear()
        in_worker()
        back.set()


def interleaved(recorder: Any) -> None:
    turn, back = threading.Event(), threading.Event()
    thread = threading.Thread(target=worker, args=(turn, back, ROUNDS), name="worker")
    recorder.enable()  # before the thread starts: its worker() call is in the profile
    thread.start()
    try:
        for _ in range(ROUNDS):
            in_main(turn, back)
    finally:
        recorder.disable()
        thread.join()


def by_name(stats: dict[Any, Any]) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for (file, _line, function), value in stats.items():
        if file == __file__:
            assert function not in named, function
            named[function] = value
    return named


def callers(value: Any) -> dict[str, int]:
    return {key[2]: edge[0] for key, edge in value[4].items()}


@pytest.fixture(params=["c", "python"])
def implementation(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    if request.param == "python":
        monkeypatch.setattr(calls, "_thread_calls", None)
    else:
        assert calls._thread_calls is not None, "profilers._thread_calls is not built"
    yield request.param


def test_each_thread_keeps_its_own_callers(implementation: str) -> None:
    recorder = calls.ThreadCalls()
    interleaved(recorder)
    named = by_name(recorder.stats())
    # Exact counts, and every edge is one that happened inside one thread.
    assert named["in_main"][:2] == (ROUNDS, ROUNDS)
    assert named["in_worker"][:2] == (ROUNDS, ROUNDS)
    assert named["leaf"][:2] == (3 * ROUNDS, 3 * ROUNDS)
    assert callers(named["leaf"]) == {"in_main": ROUNDS, "in_worker": 2 * ROUNDS}
    assert callers(named["in_worker"]) == {"worker": ROUNDS}
    # (Other threads of the test process may show up too.)
    assert {"MainThread", "worker"} <= set(recorder.thread_names())
    assert sys.monitoring.get_tool(sys.monitoring.PROFILER_ID) is None
    if implementation == "c":
        passed, _skipped = recorder.counts()
        assert passed >= 7 * ROUNDS  # at least each call's start and return


def test_plain_cprofile_mixes_the_threads_up() -> None:
    # Why ThreadCalls exists: the same run under one cProfile.Profile records calls of the
    # worker as made from whatever the main thread had open (in_main, its Event.wait).
    profiler = cProfile.Profile()
    interleaved(profiler)
    profiler.create_stats()
    named = by_name(profiler.stats)  # type: ignore[attr-defined]
    assert callers(named["in_worker"]) != {"worker": ROUNDS}, callers(named["in_worker"])


def test_left_out_threads_and_one_thread(implementation: str) -> None:
    recorder = calls.ThreadCalls(lambda t: t is not None and t.name == "worker")
    interleaved(recorder)
    named = by_name(recorder.stats())
    assert "in_main" not in named
    assert named["leaf"][:2] == (2 * ROUNDS, 2 * ROUNDS)
    assert recorder.thread_names() == ["worker"]
    assert recorder.threads_left_out >= 1  # the main thread (and any other of the process)
    # stats(thread=...) keeps one thread of several.
    both = calls.ThreadCalls()
    interleaved(both)
    assert "in_worker" not in by_name(both.stats(thread="MainThread"))
    assert by_name(both.stats(thread="worker"))["leaf"][:2] == (2 * ROUNDS, 2 * ROUNDS)


def test_a_failing_filter_leaves_the_thread_out_and_the_program_runs(implementation: str) -> None:
    def include(thread: threading.Thread | None) -> bool:
        if thread is not None and thread.name == "worker":
            raise RuntimeError("filter failed")
        return True

    recorder = calls.ThreadCalls(include)
    interleaved(recorder)
    named = by_name(recorder.stats())
    assert "in_worker" not in named and named["in_main"][:2] == (ROUNDS, ROUNDS)
    assert recorder.errors == ["RuntimeError: filter failed"]


def test_refused_while_the_profiler_slot_is_taken(implementation: str) -> None:
    sys.monitoring.use_tool_id(sys.monitoring.PROFILER_ID, "someone else")
    try:
        with pytest.raises(ValueError):
            calls.ThreadCalls().enable()
        assert sys.monitoring.get_tool(sys.monitoring.PROFILER_ID) == "someone else"
    finally:
        sys.monitoring.free_tool_id(sys.monitoring.PROFILER_ID)


def test_repl_calls_profile_keeps_the_threads_apart() -> None:
    # vmtop.profile(fn, calls=True) on 3.12+ sees the other threads too (sys.monitoring),
    # each with its own call stack (CallsRecorder uses ThreadCalls).
    from profilers.profile import profile

    def run() -> None:
        turn, back = threading.Event(), threading.Event()
        thread = threading.Thread(target=worker, args=(turn, back, ROUNDS), name="worker")
        thread.start()
        for _ in range(ROUNDS):
            in_main(turn, back)
        thread.join()

    report = profile(run, calls=True)
    named = by_name(report.stats)  # type: ignore[union-attr]
    assert callers(named["in_worker"]) == {"worker": ROUNDS}
    assert callers(named["in_main"]) == {"run": ROUNDS}
    assert callers(named["leaf"]) == {"in_main": ROUNDS, "in_worker": 2 * ROUNDS}
