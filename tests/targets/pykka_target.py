"""Pykka threading actors with known figures, driven by lines on stdin.

Actors: ``SlowActor`` (its first message blocks it until "quit": every later message waits
in its inbox), ``BusyActor`` (handles whatever the feeder tells it, counting), ``IdleActor``
(never gets a message), ``StoppingActor`` (its ``on_stop`` waits until "quit"). Commands: "fill N" (tell the slow actor N + 1 messages: one it
handles, N that wait), "feed N" (tell the busy actor N messages, as fast as it takes them,
then print how many it handled since), "stop-one" (stop the stopping actor), "quit N". Prints JSON lines; the first is {"ready": true, "urns": {...}}.
"""

import json
import sys
import threading
import time

import pykka

release = threading.Event()


def say(**obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def crunch(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


class SlowActor(pykka.ThreadingActor):
    def on_receive(self, message):
        self.wait_for_release(message)

    def wait_for_release(self, message):
        release.wait()


class BusyActor(pykka.ThreadingActor):
    def __init__(self):
        super().__init__()
        self.handled = 0

    def on_receive(self, message):
        if message == "count":
            return self.handled
        self.handled += 1
        crunch(2000)
        return None


class IdleActor(pykka.ThreadingActor):
    pass


class StoppingActor(pykka.ThreadingActor):
    def on_stop(self):
        release.wait()  # stopped, and its on_stop holds the thread until "quit"


def feed(busy, n):
    base = busy.ask("count")
    for i in range(n):
        busy.tell({"n": i})
        while busy.actor_inbox.qsize() > 20:
            time.sleep(0.001)
    return busy.ask("count") - base  # answered after every message told before it


def main():
    slow = SlowActor.start()
    busy = BusyActor.start()
    idle = IdleActor.start()
    stopping = StoppingActor.start()
    say(
        ready=True,
        urns={
            "slow": slow.actor_urn,
            "busy": busy.actor_urn,
            "idle": idle.actor_urn,
            "stopping": stopping.actor_urn,
        },
    )
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "fill":
            for i in range(int(arg) + 1):
                slow.tell({"job": i})
            say(filled=int(arg))
        elif cmd == "stop-one":
            stopping.stop(block=False)
            say(stop_sent=True)
        elif cmd == "feed":
            say(handled=feed(busy, int(arg)))
        elif cmd == "quit":
            release.set()
            pykka.ActorRegistry.stop_all(timeout=10)
            sys.exit(int(arg or 0))


if __name__ == "__main__":
    main()
