"""Attach latency and the cost of ``vmtop record`` to the recorded process.

    python benchmarks/bench_attach.py [--rounds N] [--quick] [--methods ptrace,gdb] [--pyc]
    python benchmarks/bench_attach.py --hello [--rounds N] [--python PATH]
    python benchmarks/bench_attach.py --command [--rounds N] [--pyc]

1. **Attach latency, agent present**: ``ensure_agent(pid)`` (finds and probes the socket)
   plus ``AgentClient.connect()`` (hello), median of N runs on one target.
2. **Attach latency, injection**: on a fresh target each run (an injected agent stays
   loaded), for an asyncio loop idle in epoll_wait and a CPU-busy main thread, each injection
   method in ``--methods`` (default ptrace and gdb), all interleaved in every round: the time
   to the first snapshot, split into ``ensure_agent(pid, inject=True, yes=True,
   method=M)`` (checks, injection, the agent's import and start), ``AgentClient.connect()``
   (its hello) and the first ``snapshot()``; median of N runs each. The targets inherit this
   environment: with ``PYTHONDONTWRITEBYTECODE=1`` and no ``__pycache__`` in the checkout,
   the target compiles vmtop's modules at each injection. ``--pyc`` gives them a bytecode
   cache (``PYTHONPYCACHEPREFIX``, filled by a first untimed injection), as an installed
   vmtop has.
   A third target is an asyncio loop whose one task computes for 1.5 ms between
   ``await asyncio.sleep(0)``: the loop gives the GIL up and takes it back at every
   ``select(0)``, which starves other threads that wait for it the ordinary way.
3. **Hello latency** (``--hello``, only this part): targets that started their agent
   themselves (``vmtop.agent.start()``), run by ``--python`` (default: this interpreter):
   an asyncio task computing 1.5 ms or 20 ms between ``await asyncio.sleep(0)``, and a
   pure-CPU loop that never awaits; ``AgentClient.connect()`` (connect + hello) N times,
   0.1 s apart, median and range.
4. **The whole command, to its first output** (``--command``, only this part): on a fresh
   target each run, the wall time from starting the command (``subprocess.Popen``, so the
   interpreter's own start-up is in it) to the first snapshot in the user's hands:
   - ``vmtop top PID --once --inject --yes --interval 0.05``: to the first line of the
     table on its stdout (the table is written at once). The first snapshot covers one
     interval after the hello (docs/columns.md), 0.05 s here, the smallest allowed;
   - ``vmtop attach PID --yes`` in a pseudo-terminal (120x40, ``TERM=xterm-256color``): to
     the first time the screen shows the target's main thread row (``MainThread`` in the
     terminal output; only a table row names it), i.e. the first frame with the table.
     Then ``q``.
   Targets: the idle asyncio loop, the CPU-busy main thread and the 1.5 ms-step loop, and an
   idle loop whose agent was injected before (no injection: the command's own start); each
   round runs every (command, target) pair in rotating order. With ``--pyc``, the targets and
   the commands get a bytecode cache (an installed vmtop has one), filled by one untimed run
   of each command.
5. **Throughput while recorded at 100 Hz**: a CPU-bound target counts loop iterations; each
   round measures its rate over W seconds plain, while ``vmtop record -r 100`` samples it and
   while bare ``py-spy record -r 100 --format raw`` samples it (the floor: vmtop adds only
   reading and writing after py-spy stops), in rotating order; the window starts 0.5 s after
   py-spy started and ends before the recording does. Ratios are rate / the same round's plain
   rate; the table gives medians (min-max).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vmtop.attach.ensure import ensure_agent  # noqa: E402
from vmtop.client import AgentClient  # noqa: E402
from vmtop.paths import socket_path  # noqa: E402
from vmtop.peek import pyspy_path  # noqa: E402

IDLE = """
import asyncio
async def main():
    print("ready", flush=True)
    await asyncio.get_running_loop().create_future()
asyncio.run(main())
"""
BUSY = """
import sys
print("ready", flush=True)
n = 0
while True:
    for i in range(1000):
        n += i
"""
COUNTER = """
import sys, threading, time
count = 0
main_clock = time.pthread_getcpuclockid(threading.get_ident())
def report():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        print(count, time.perf_counter(), time.clock_gettime(main_clock), flush=True)
threading.Thread(target=report, daemon=True).start()
print("ready", flush=True)
while True:
    for i in range(1000):
        pass
    count += 1
"""


class Target:
    def __init__(
        self,
        source: str,
        tmp: Path,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        script = tmp / f"t{time.monotonic_ns()}.py"
        script.write_text(textwrap.dedent(source))
        self.proc = subprocess.Popen(
            [python, "-u", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"
        self.pid = self.proc.pid

    def count(self) -> tuple[int, float, float]:
        """(iterations, wall clock, main thread CPU seconds) in the target."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        n, t, cpu = self.proc.stdout.readline().split()
        return int(n), float(t), float(cpu)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        socket_path(self.pid).unlink(missing_ok=True)


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def attach_present(tmp: Path, rounds: int) -> list[float]:
    target = Target(IDLE, tmp)
    try:
        ensure_agent(target.pid, inject=True, yes=True, progress=lambda m: None)
        out = []
        for _ in range(rounds):
            t = time.perf_counter()
            ensure_agent(target.pid, inject=False, progress=lambda m: None)
            client = AgentClient(target.pid).connect()
            out.append(time.perf_counter() - t)
            client.close()
        return out
    finally:
        target.stop()


STEPPING = """
import asyncio, time
def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
async def main():
    print("ready", flush=True)
    while True:
        spin(STEP)
        await asyncio.sleep(0)
asyncio.run(main())
"""
CPU_LOOP = """
print("ready", flush=True)
n = 0
while True:
    n += 1
"""
TARGETS = {
    "idle asyncio loop (epoll_wait)": IDLE,
    "CPU-busy main thread": BUSY,
    "asyncio loop, 1.5 ms steps": STEPPING.replace("STEP", "0.0015"),
}
HELLO_TARGETS = {
    "asyncio loop, 1.5 ms steps": STEPPING.replace("STEP", "0.0015"),
    "asyncio loop, 20 ms steps": STEPPING.replace("STEP", "0.02"),
    "pure CPU loop, no awaits": CPU_LOOP,
}
AGENT_FIRST = "import sys; sys.path.insert(0, {root!r}); import vmtop.agent; vmtop.agent.start()\n"
PARTS = ("ensure_agent", "hello", "first snapshot", "total")


def hello_latency(tmp: Path, rounds: int, python: str) -> dict[str, list[float]]:
    """Per target: seconds of ``AgentClient.connect()`` (connect + hello), ``rounds`` times."""
    root = str(Path(__file__).resolve().parent.parent)
    out: dict[str, list[float]] = {}
    for name, source in HELLO_TARGETS.items():
        target = Target(AGENT_FIRST.format(root=root) + textwrap.dedent(source), tmp, None, python)
        try:
            time.sleep(0.3)  # past the agent's start
            times = []
            for _ in range(rounds):
                t = time.perf_counter()
                client = AgentClient(target.pid, timeout=60).connect()
                times.append(time.perf_counter() - t)
                client.close()
                time.sleep(0.1)
            out[name] = times
        finally:
            target.stop()
    return out


def first_snapshot(target: Target, method: str) -> dict[str, float]:
    """Seconds from the start of the attach to the first snapshot, and its parts."""
    t0 = time.perf_counter()
    ensure_agent(target.pid, inject=True, yes=True, progress=lambda m: None, method=method)
    t1 = time.perf_counter()
    client = AgentClient(target.pid).connect()
    t2 = time.perf_counter()
    client.snapshot(limit=30)
    t3 = time.perf_counter()
    client.close()
    return dict(zip(PARTS[:4], (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True))


def attach_inject(
    tmp: Path, rounds: int, methods: list[str], env: dict[str, str] | None
) -> dict[tuple[str, str], dict[str, list[float]]]:
    out: dict[tuple[str, str], dict[str, list[float]]] = {
        (m, name): {p: [] for p in PARTS} for m in methods for name in TARGETS
    }
    for r in range(rounds):
        order = list(out)
        order = order[r % len(order) :] + order[: r % len(order)]  # rotate: no fixed first
        for method, name in order:
            target = Target(TARGETS[name], tmp, env)
            try:
                for part, value in first_snapshot(target, method).items():
                    out[method, name][part].append(value)
            finally:
                target.stop()
    return out


COMMANDS = {
    "top": ["top", "{pid}", "--once", "--inject", "--yes", "--interval", "0.05"],
    "attach": ["attach", "{pid}", "--yes"],
}
PRESENT = "idle asyncio loop, agent already there"  # no injection: the command's own start
TABLE_ROW = b"MainThread"  # the main thread's row: only the table names it
PTY_SIZE = (40, 120)  # rows, columns


def command_output(command: str, pid: int, env: dict[str, str] | None) -> float:
    """Seconds from starting ``vmtop COMMAND`` on ``pid`` to its first snapshot on screen."""
    argv = [sys.executable, "-m", "vmtop", *(a.format(pid=pid) for a in COMMANDS[command])]
    if command == "top":
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        elapsed = time.perf_counter() - t0
        _, err = proc.communicate(timeout=30)
        if proc.returncode != 0 or not first.startswith(b"vmtop"):
            raise RuntimeError(f"vmtop top failed: {first!r} {err.decode()[-500:]}")
        return elapsed
    return _attach_in_pty(argv, env)


def _attach_in_pty(argv: list[str], env: dict[str, str] | None) -> float:
    import fcntl
    import pty
    import select
    import struct
    import termios

    env = dict(os.environ if env is None else env, TERM="xterm-256color")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *PTY_SIZE, 0, 0))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, start_new_session=True
    )
    os.close(slave)
    screen = b""
    elapsed = None
    try:
        while time.perf_counter() - t0 < 30:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the command exited
                break
            screen += chunk
            if TABLE_ROW in screen:
                elapsed = time.perf_counter() - t0
                break
        os.write(master, b"q")
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    if elapsed is None:
        raise RuntimeError(f"vmtop attach showed no table: {screen[-500:]!r}")
    return elapsed


def command_latency(
    tmp: Path, rounds: int, env: dict[str, str] | None
) -> dict[tuple[str, str], list[float]]:
    """Per (command, target): seconds to the first snapshot on screen, ``rounds`` runs each."""
    names = [*TARGETS, PRESENT]
    out: dict[tuple[str, str], list[float]] = {(c, t): [] for c in COMMANDS for t in names}
    for r in range(rounds):
        order = list(out)
        order = order[r % len(order) :] + order[: r % len(order)]  # rotate: no fixed first
        for command, name in order:
            target = Target(TARGETS.get(name, IDLE), tmp, env)
            try:
                if name == PRESENT:  # the command's own start: nothing to inject
                    ensure_agent(target.pid, inject=True, yes=True, progress=lambda m: None)
                out[command, name].append(command_output(command, target.pid, env))
            finally:
                target.stop()
    return out


def warm_commands(tmp: Path, env: dict[str, str]) -> None:
    """One untimed run of each command: their modules (and the agent's) get compiled."""
    for command in COMMANDS:
        target = Target(IDLE, tmp, env)
        try:
            command_output(command, target.pid, env)
        finally:
            target.stop()


def pyc_env(tmp: Path) -> dict[str, str]:
    """Targets with a bytecode cache of their own, filled by one untimed injection."""
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(tmp / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    target = Target(IDLE, tmp, env)
    try:
        ensure_agent(target.pid, inject=True, yes=True, progress=lambda m: None)
    finally:
        target.stop()
    return env


def recorded_throughput(
    tmp: Path, rounds: int, window: float
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per mode: iterations per wall second, and per CPU second of the target's main thread."""
    target = Target(COUNTER, tmp)
    modes = ["plain", "vmtop record", "py-spy record"]
    rates: dict[str, list[float]] = {m: [] for m in modes}
    per_cpu: dict[str, list[float]] = {m: [] for m in modes}
    seconds = str(int(window + 2))  # the recording outlasts the measured window
    try:
        for r in range(rounds):
            for mode in modes[r % 3 :] + modes[: r % 3]:
                out = tmp / "rec.folded"
                proc = None
                if mode == "vmtop record":
                    cmd = [sys.executable, "-m", "vmtop", "record", str(target.pid)]
                    cmd += ["-d", seconds, "-r", "100", "-o", str(out)]
                    proc = subprocess.Popen(
                        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
                    )
                    assert proc.stderr is not None
                    proc.stderr.readline()  # "sampling pid ...": py-spy is being started
                elif mode == "py-spy record":
                    cmd = [pyspy_path(), "record", "--pid", str(target.pid), "-d", seconds]
                    cmd += ["-r", "100", "--format", "raw", "-o", str(out)]
                    proc = subprocess.Popen(
                        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
                    )
                if proc is not None:
                    time.sleep(0.5)  # past py-spy's start-up: measure while it samples
                n0, t0, c0 = target.count()
                time.sleep(window)
                n1, t1, c1 = target.count()
                rates[mode].append((n1 - n0) / (t1 - t0))
                per_cpu[mode].append((n1 - n0) / max(c1 - c0, 1e-9))
                if proc is not None:
                    proc.communicate()
        return rates, per_cpu
    finally:
        target.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="2 rounds, 2 s windows")
    parser.add_argument("--methods", default="ptrace,gdb", help="injection methods to time")
    parser.add_argument("--pyc", action="store_true", help="targets with a bytecode cache")
    parser.add_argument("--attach-only", action="store_true", help="skip the record part")
    parser.add_argument("--hello", action="store_true", help="only the hello latency part")
    parser.add_argument(
        "--command", action="store_true", help="only the whole commands, to their first output"
    )
    parser.add_argument("--python", default=sys.executable, help="the --hello targets' Python")
    args = parser.parse_args()
    if args.hello:
        rounds = args.rounds * 3
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as d:
            hellos = hello_latency(Path(d), rounds, args.python)
        version = subprocess.run(
            [args.python, "-c", "import sys; print(sys.version.split()[0])"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        print(
            f"targets on Python {version}, {os.cpu_count()} CPUs, load average {load:.1f} "
            f"before / {os.getloadavg()[0]:.1f} after, {rounds} hellos each\n"
        )
        print("| hello (connect + reply) against | median ms (min-max) |\n| --- | --- |")
        for name, times in hellos.items():
            ms = [t * 1000 for t in times]
            print(f"| {name} | {statistics.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f}) |")
        return
    if args.command:
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            env = pyc_env(tmp) if args.pyc else None
            if env is not None:
                warm_commands(tmp, env)
            latency = command_latency(tmp, args.rounds, env)
        print(
            f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f} "
            f"before / {os.getloadavg()[0]:.1f} after, {args.rounds} rounds, "
            f"{'with' if args.pyc else 'without'} a bytecode cache\n"
        )
        print(
            "| target | `vmtop top PID --once --inject --yes -i 0.05`, median s (min-max) "
            "| `vmtop attach PID --yes`, first table |"
        )
        print("| --- | --- | --- |")
        for name in [*TARGETS, PRESENT]:
            print(
                f"| {name} | {summary(latency['top', name])} | {summary(latency['attach', name])} |"
            )
        return
    rounds, window = (2, 2.0) if args.quick else (args.rounds, args.window)
    methods = [m for m in args.methods.split(",") if m]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env = pyc_env(tmp) if args.pyc else None
        present = attach_present(tmp, rounds * 3)
        injected = attach_inject(tmp, rounds, methods, env)
        if not args.attach_only:
            rates, per_cpu = recorded_throughput(tmp, rounds, window)
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f} "
        f"before / {os.getloadavg()[0]:.1f} after, {rounds} rounds"
        f"{', targets with a bytecode cache' if args.pyc else ''}\n"
    )
    print("| attach | median s (min-max) | runs |\n| --- | --- | --- |")
    print(f"| agent present (probe + hello) | {summary(present)} | {len(present)} |")
    print(
        "\n| injection, to the first snapshot | method | total, median s (min-max) "
        "| ensure_agent | hello | first snapshot |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for (method, name), parts in injected.items():
        print(
            f"| {name} | {method} | {summary(parts['total'])} | "
            + " | ".join(f"{statistics.median(parts[p]):.3f}" for p in PARTS[:3])
            + " |"
        )
    if args.attach_only:
        return
    print(
        "\n| target while recorded at 100 Hz | iterations / wall s, ratio to plain "
        "| iterations / CPU s of the target, ratio to plain |"
    )
    print("| --- | --- | --- |")
    for mode in ("vmtop record", "py-spy record"):
        wall = [r / p for r, p in zip(rates[mode], rates["plain"], strict=True)]
        cpu = [r / p for r, p in zip(per_cpu[mode], per_cpu["plain"], strict=True)]
        print(f"| {mode} | {summary(wall)} | {summary(cpu)} |")


if __name__ == "__main__":
    main()
