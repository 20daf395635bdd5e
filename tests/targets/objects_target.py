"""Tasks holding the kinds of objects the agent looks into, and a way to ask whether it
changed them: ``check`` prints which objects now have a ``__dict__`` made for them and which
``__getattr__`` calls the program's classes saw.

Prints {"ready": true, "pid": N}; stdin: ``check`` -> {"materialized": [...], "getattr": [...]},
``quit``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys

GETATTR_CALLS: list[str] = []


class Handler:
    def __init__(self, n: int) -> None:
        self.n = n
        self.name = f"handler-{n}"
        self.buffer = [bytes(64) for _ in range(8)]
        self.inbox: asyncio.Queue[int] = asyncio.Queue()

    async def serve(self, stop: asyncio.Event) -> None:
        proxy = Proxy()  # a local whose class answers any attribute name
        if self.n < 0:  # never: but the bytecode takes from self.inbox, which vmtop reads
            self.inbox.get_nowait()
        await stop.wait()
        del proxy


class Proxy:
    def __getattr__(self, name: str) -> object:
        GETATTR_CALLS.append(name)
        raise AttributeError(name)


def has_dict(obj: object) -> bool:
    """Whether ``obj`` holds a real ``__dict__`` (its attributes hold no dict of their own)."""
    return any(type(r) is dict for r in gc.get_referents(obj))


def say(**obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handlers = [Handler(i) for i in range(3)]
    for h in handlers:
        for i in range(5):
            h.inbox.put_nowait(i)
    tasks = [asyncio.create_task(h.serve(stop), name=h.name) for h in handlers]
    watched: dict[str, object] = {h.name: h for h in handlers}
    watched.update({f"{h.name}.inbox": h.inbox for h in handlers})
    before = sorted(k for k, v in watched.items() if has_dict(v))
    say(ready=True, pid=os.getpid(), materialized_at_start=before)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        if line == "check":
            say(
                materialized=sorted(k for k, v in watched.items() if has_dict(v)),
                getattr=sorted(set(GETATTR_CALLS)),
            )
        elif line.startswith("quit"):
            break
    stop.set()
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main())
