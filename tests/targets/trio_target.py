"""A deterministic Trio target for the agent tests, driven by lines on stdin.

Tasks: "scripted" (on "wake" it makes exactly STEPS checkpoints, then prints
scripted_done), "backlog-consumer" (a memory channel with BACKLOG items: it takes one, puts
it back and sleeps, so the backlog stays), "worker-0"/"worker-1" (share one channel),
"idle-receiver" (parked in receive() on an empty channel since the start), "hot" (CPU in
short steps). Commands: "wake", "hooks" (print whether an instrument, vmtop's channel hook
and its lag probe are in, and how many tasks' coroutines are wrapped), "block S" (time.sleep(S) on the run's thread), "quit N". With ``--start`` the program calls
``vmtop.agent.start()`` itself, from inside the run (run it with plain ``python``).
Prints one JSON object per line; the first is {"ready": true, ...}.
"""

import json
import math
import sys
import threading
import time
import types

import trio

ORIGINAL_RECEIVE_NOWAIT = trio.MemoryReceiveChannel.receive_nowait
STEPS = 9  # checkpoints per "wake": the task resumes 1 (the wake) + STEPS times
BACKLOG = 500


def say(**obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def crunch(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


class Scripted:
    def __init__(self):
        self.event = trio.Event()

    def wake(self):
        self.event.set()

    async def run(self):
        while True:
            await self.event.wait()
            self.event = trio.Event()
            for _ in range(STEPS):
                await trio.lowlevel.checkpoint()
            say(scripted_done=True)


async def backlog_consumer(receive, send):
    # Takes one item and puts it back in the same step (receive() would checkpoint in
    # between, and a snapshot there would see one less), then sleeps.
    while True:
        item = receive.receive_nowait()
        send.send_nowait(item)
        await trio.sleep(0.02)


async def worker(receive):
    async for _ in receive:
        pass


async def idle_receiver(receive):
    await receive.receive()


async def hot():
    while True:
        crunch(20000)
        await trio.sleep(0)


def hooks():
    runner = trio._core._run.GLOBAL_RUN_CONTEXT.runner  # the run's own view of its instruments
    say(
        hooks=True,
        instruments=len(runner.instruments.get("_all", {})),
        step_hook="before_task_step" in runner.instruments,
        wrapped=sum(not isinstance(t.coro, types.CoroutineType) for t in runner.tasks),
        receive_hooked=trio.MemoryReceiveChannel.receive_nowait is not ORIGINAL_RECEIVE_NOWAIT,
        probes=sum(t.name == "<vmtop lag probe>" for t in runner.system_nursery.child_tasks),
    )


def read_stdin(token, scripted, done):
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "wake":
            trio.from_thread.run_sync(scripted.wake, trio_token=token)
        elif cmd == "hooks":
            trio.from_thread.run_sync(hooks, trio_token=token)
        elif cmd == "block":
            trio.from_thread.run_sync(time.sleep, float(arg), trio_token=token)
            say(blocked=float(arg))
        elif cmd == "quit":
            done["code"] = int(arg or 0)
            trio.from_thread.run_sync(done["cancel"].cancel, trio_token=token)
            return


async def main(start_agent):
    if start_agent:
        import vmtop.agent

        vmtop.agent.start(strict=True)
    send, receive = trio.open_memory_channel(math.inf)
    for i in range(BACKLOG):
        send.send_nowait(i)
    shared_send, shared_receive = trio.open_memory_channel(0)
    idle_send, idle_receive = trio.open_memory_channel(0)
    scripted = Scripted()
    done = {"code": 0}
    with trio.CancelScope() as scope:
        done["cancel"] = scope
        async with trio.open_nursery() as nursery:
            nursery.start_soon(scripted.run, name="scripted")
            nursery.start_soon(backlog_consumer, receive, send, name="backlog-consumer")
            for i in range(2):
                nursery.start_soon(worker, shared_receive.clone(), name=f"worker-{i}")
            nursery.start_soon(idle_receiver, idle_receive, name="idle-receiver")
            nursery.start_soon(hot, name="hot")
            token = trio.lowlevel.current_trio_token()
            reader = threading.Thread(
                target=read_stdin, args=(token, scripted, done), daemon=True, name="stdin"
            )
            reader.start()
            await trio.sleep(0.1)  # every task parked where it will stay
            say(ready=True, steps=STEPS, backlog=BACKLOG)
    del shared_send, idle_send
    return done["code"]


if __name__ == "__main__":
    sys.exit(trio.run(main, "--start" in sys.argv[1:]))
