"""Starts children every way a Python program does and reports whether each had an agent
listening on its own pid's socket (tests/test_subprocesses.py). Prints one JSON line."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys

from vmtop.fleet.tree import agent_state
from vmtop.paths import socket_path

CHECK = "import os; from vmtop.fleet.tree import agent_state; print(agent_state(os.getpid()))"


def report(q: mp.Queue) -> None:  # type: ignore[type-arg]
    q.put((os.getpid(), agent_state(os.getpid())))


def main() -> None:
    out: dict[str, object] = {"pid": os.getpid()}
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # gunicorn's way: a fork that goes on running the program
        os.close(r)
        os.write(w, agent_state(os.getpid()).encode())
        os._exit(0)
    os.close(w)
    out["fork"] = os.read(r, 64).decode()
    os.waitpid(child, 0)
    out["fork_socket_left"] = socket_path(child).exists()
    out["parent_after_fork"] = agent_state(os.getpid())
    for method in ("spawn", "forkserver", "fork"):
        ctx = mp.get_context(method)
        q = ctx.Queue()
        p = ctx.Process(target=report, args=(q,))
        p.start()
        pid, state = q.get(timeout=60)
        p.join()
        out[f"mp_{method}"] = state
        out[f"mp_{method}_socket_left"] = socket_path(pid).exists()
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    out["subprocess"] = done.stdout.strip()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
