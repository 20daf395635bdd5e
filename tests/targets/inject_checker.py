"""A plain program that checks its own results while vmtop injects into it.

    python inject_checker.py KIND        KIND: idle busy gil sleep malloc

Used by tests/test_attach_safety.py and benchmarks/soak_attach.py. It never imports vmtop.
Every KIND computes floats the same way over and over (a pure-Python loop, ``sum`` of floats
and ``math.fsum``/``math.hypot``, whose C loops keep their running values in vector registers)
and compares each result with the one it computed at start: a register an injector changed
and did not restore shows up as ``bad`` > 0. It prints JSON lines: ``{"ready": true}`` once,
then ``{"beat": N, "bad": M, "threading": ...}`` about every 0.1 s (the heartbeat: a target
that hangs stops beating; ``threading`` is null until something imports it, then whether
``threading.main_thread()`` is really the main thread).

- ``idle``: an asyncio loop with nothing to do but wait in epoll; a thread beats and checks.
- ``busy``: the main thread computes and checks without pause; no other thread, and the
  program never imports ``threading`` (started with ``-S``, nothing else does either: the
  injector's payload then runs its bootstrap as a pending call of the main thread).
- ``gil``: a second thread holds the GIL in the regex engine for about a second at a time.
- ``sleep``: the main thread sleeps 0.3 s at a time; each sleep must last its full length.
- ``malloc``: two threads allocate and free blocks of many sizes (glibc malloc, arena locks)
  while the main thread computes and checks.
"""

import _thread
import json
import math
import sys
import time

VALUES = [i * 0.1 + 1e-3 for i in range(4000)]
VECTOR = [float(i % 7) + 0.25 for i in range(64)]


def compute() -> tuple[float, float, float, float]:
    x = 0.0
    for v in VALUES[:400]:
        x = x * 0.999 + v / 3.0
    return x, sum(VALUES), math.fsum(VALUES), math.hypot(*VECTOR)


EXPECTED = compute()
MAIN = _thread.get_ident()
state: dict[str, object] = {"beat": 0, "bad": 0, "short_sleeps": 0}


def check() -> None:
    if compute() != EXPECTED:
        state["bad"] = int(str(state["bad"])) + 1


def emit(**kw: object) -> None:
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def beat() -> None:
    state["beat"] = int(str(state["beat"])) + 1
    # Whoever imported threading first, threading.main_thread() must be this program's.
    threading = sys.modules.get("threading")
    state["threading"] = None if threading is None else threading.main_thread().ident == MAIN
    emit(**state)


def compute_and_beat(forever_sleep: float = 0.0) -> None:
    last = time.monotonic()
    while True:
        check()
        if forever_sleep:
            t = time.monotonic()
            time.sleep(forever_sleep)
            if time.monotonic() - t < forever_sleep:
                state["short_sleeps"] = int(str(state["short_sleeps"])) + 1
        if time.monotonic() - last >= 0.1:
            last = time.monotonic()
            beat()


def start_thread(fn: object, name: str) -> None:
    import threading

    threading.Thread(target=fn, name=name, daemon=True).start()  # type: ignore[arg-type]


def gil_hog() -> None:
    import re

    while True:
        re.match(r"(a+)+b", "a" * 22)  # about a second in C, holding the GIL
        time.sleep(0.05)


def allocate() -> None:
    import random

    rng = random.Random(1)
    blocks: list[bytearray] = []
    while True:
        blocks.append(bytearray(rng.choice((24, 200, 3000, 70_000, 300_000))))
        if len(blocks) > 64:
            del blocks[: rng.randrange(1, 64)]


def idle() -> None:
    import asyncio

    async def main() -> None:
        start_thread(lambda: compute_and_beat(0.05), "checker")
        emit(ready=True)
        await asyncio.get_running_loop().create_future()  # epoll_wait, no timers

    asyncio.run(main())


def main() -> None:
    kind = sys.argv[1]
    if kind == "idle":
        idle()
        return
    if kind == "gil":
        start_thread(gil_hog, "gil-hog")
    elif kind == "malloc":
        start_thread(allocate, "malloc-1")
        start_thread(allocate, "malloc-2")
    emit(ready=True)
    compute_and_beat(0.3 if kind == "sleep" else 0.0)


if __name__ == "__main__":
    main()
