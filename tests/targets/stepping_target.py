"""An asyncio program whose one task computes for 1.5 ms (or ``argv[2]`` seconds) between
``await asyncio.sleep(0)`` (tests/test_priority.py). The loop then gives the GIL up and takes it back at every
select(0), faster than a waiting thread's switch interval: the case that starved the agent.

Run it with ``vmtop run`` (the agent is there from the start). It prints "ready" and counts
its steps in the 8-byte file
``argv[1]`` (a little-endian counter, through mmap), so a test can count steps, not time.
"""

import asyncio
import mmap
import struct
import sys
import time

STEP = 0.0015


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def main(counter, step):
    steps = 0
    print("ready", flush=True)
    while True:
        steps += 1
        counter[0:8] = struct.pack("<Q", steps)
        spin(step)
        await asyncio.sleep(0)


if __name__ == "__main__":
    with open(sys.argv[1], "r+b") as f:
        step = float(sys.argv[2]) if len(sys.argv) > 2 else STEP
        asyncio.run(main(mmap.mmap(f.fileno(), 8), step))
