"""Soak: many ptrace injections into self-checking targets, on every Python at hand.

    python benchmarks/soak_attach.py [--targets N] [--per-target M] [--python PATH ...]

For each interpreter (default: this one, and CI's ``.ci-venv-3.12`` / ``.ci-venv-3.13``) and
each kind of tests/targets/inject_checker.py (an idle asyncio loop, a busy main thread that
never imported threading, a thread holding the GIL in C, a sleeping main thread, two
malloc-heavy threads): start N fresh targets, load the agent into each with vmtop's ptrace
injector, then inject M - 1 more times (a bootstrap that only prints a line, so each one is
seen to run once), then read three more heartbeats. Defaults: 2 targets x 4 injections x 5
kinds x 3 Pythons = 120 injections.

Counted per interpreter and kind: injections that ran; **hangs** (an injection that never
ran, or no heartbeat for 30 s); **crashes** (the target exited); **changed outputs** (a float
or vector result that differs from the target's first one, a sleep cut short, a wrong
``threading.main_thread()``); targets **left stopped or traced** after an injection. Also the
median time of the agent's injection and of a further one (ms). Each interpreter runs its own
copy of this script (``--worker``), since an injector must run the target's Python version.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.attach_helpers import KINDS, Checker, inject_agent_ptrace, inject_marker  # noqa: E402


def soak_kind(kind: str, targets: int, per_target: int, workdir: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"kind": kind, "injections": 0, "hangs": 0, "crashes": 0}
    row.update(changed=0, stopped=0, agent_ms=[], again_ms=[])
    for _ in range(targets):
        target = Checker(kind)
        try:
            target.beats(1)
            t = time.perf_counter()
            inject_agent_ptrace(target)
            row["agent_ms"].append((time.perf_counter() - t) * 1000)
            row["injections"] += 1
            row["stopped"] += not target.running_and_untraced()
            for n in range(1, per_target):
                t = time.perf_counter()
                inject_marker(target, n, workdir)
                row["again_ms"].append((time.perf_counter() - t) * 1000)
                row["injections"] += 1
                row["stopped"] += not target.running_and_untraced()
            after = target.beats(3)
            bad = after["bad"] or after["short_sleeps"] or after["threading"] is not True
            row["changed"] += bool(bad)
        except AssertionError as exc:
            if target.proc.poll() is not None:
                row["crashes"] += 1
            else:
                row["hangs"] += 1
            row.setdefault("errors", []).append(str(exc))
        except Exception as exc:  # an injection that failed outright: report it
            row.setdefault("errors", []).append(f"{type(exc).__name__}: {exc}")
        finally:
            target.stop()
    return row


def worker(targets: int, per_target: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        for kind in KINDS:
            row = soak_kind(kind, targets, per_target, Path(d))
            row["python"] = sys.version.split()[0]
            print(json.dumps(row), flush=True)


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.0f}" if values else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", type=int, default=2)
    parser.add_argument("--per-target", type=int, default=4)
    parser.add_argument("--python", action="append", help="interpreter with vmtop installed")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.targets, args.per_target)
        return
    pythons = args.python or [sys.executable] + [
        str(p)
        for p in (REPO / ".ci-venv-3.12/bin/python", REPO / ".ci-venv-3.13/bin/python")
        if p.exists()
    ]
    load = os.getloadavg()[0]
    rows = []
    for python in pythons:
        cmd = [python, __file__, "--worker", "--targets", str(args.targets)]
        cmd += ["--per-target", str(args.per_target)]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if out.returncode:
            print(f"{python}: worker failed: {out.stderr.strip()[-500:]}", file=sys.stderr)
        rows += [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    print(
        f"{os.cpu_count()} CPUs, load average {load:.1f} before / {os.getloadavg()[0]:.1f} after\n"
    )
    print(
        "| Python | target | injections | hangs | crashes | changed outputs | left stopped "
        "| agent injection, median ms | further injection, median ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    total = {k: 0 for k in ("injections", "hangs", "crashes", "changed", "stopped")}
    for r in rows:
        for k in total:
            total[k] += r[k]
        print(
            f"| {r['python']} | {r['kind']} | {r['injections']} | {r['hangs']} | {r['crashes']} "
            f"| {r['changed']} | {r['stopped']} | {median(r['agent_ms'])} | {median(r['again_ms'])} |"
        )
    print(
        f"| all | | {total['injections']} | {total['hangs']} | {total['crashes']} "
        f"| {total['changed']} | {total['stopped']} | | |"
    )
    for r in rows:
        for e in r.get("errors", []):
            print(f"{r['python']} {r['kind']}: {e}")


if __name__ == "__main__":
    main()
