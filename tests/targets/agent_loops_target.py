"""Target for loop-flavour tests: ``uvloop`` or ``eager`` (3.12+ eager_task_factory).

Prints {"ready": ...}; on "spawn" (stdin) creates a task that finishes after exactly
1 (eager first step) + 3 (sleep(0)) steps, then waits forever; "quit" ends.
"""

import asyncio
import json
import sys

from stdin_lines import read_lines


def say(**obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def stepper():
    for _ in range(3):
        await asyncio.sleep(0)
    say(stepper_done=True)
    await asyncio.Event().wait()


async def spin():
    while True:
        sum(range(5000))
        await asyncio.sleep(0)


async def main(mode):
    loop = asyncio.get_running_loop()
    if mode == "eager":
        loop.set_task_factory(asyncio.eager_task_factory)
    spinner = asyncio.create_task(spin(), name="spinner")
    stop = asyncio.Event()
    keep = []

    def on_line(line):
        if line == "spawn":
            keep.append(asyncio.create_task(stepper(), name="stepper"))
        elif line is None or line == "quit":
            stop.set()

    read_lines(loop, on_line)
    say(ready=True, loop=type(loop).__module__)
    await stop.wait()
    spinner.cancel()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "uvloop":
        import uvloop

        uvloop.run(main(mode))
    else:
        asyncio.run(main(mode))
