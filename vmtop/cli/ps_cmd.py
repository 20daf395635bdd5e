"""``vmtop ps``: Python processes of this user, their version, and whether an agent listens."""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
from dataclasses import asdict, dataclass
from typing import Any

from vmtop.paths import socket_path


def register(sub: Any) -> None:
    p = sub.add_parser("ps", help="list Python processes and whether a vmtop agent listens in them")
    p.add_argument("--all", action="store_true", help="every user's processes (root sees all)")
    p.add_argument("--json", action="store_true", help="one JSON array")
    p.set_defaults(func=run)


@dataclass(frozen=True)
class PyProcess:
    pid: int
    user: str
    python: str
    agent: str  # "listening" | "stale" | "-"
    cmdline: str


_VERSION_RE = re.compile(r"libpython(\d+\.\d+)|/python(\d+\.\d+)")


def python_version(pid: int, exe: str) -> str:
    """X.Y from the loaded libpython or the executable's name; '?' when neither says."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                if "libpython" in line or "/python3." in line:
                    m = _VERSION_RE.search(line)
                    if m:
                        return m.group(1) or m.group(2)
    except OSError:
        pass
    m = re.search(r"python(\d+\.\d+)", os.path.basename(os.path.realpath(exe)) if exe else "")
    return m.group(1) if m else "?"


def agent_state(pid: int) -> str:
    path = socket_path(pid)
    if not path.exists():
        return "-"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(str(path))
        return "listening"
    except OSError:
        return "stale"
    finally:
        s.close()


def python_processes(all_users: bool = False) -> list[PyProcess]:
    import psutil

    me = os.getuid()
    out = []
    for proc in psutil.process_iter(["pid", "name", "exe", "cmdline", "uids", "username"]):
        info = proc.info
        if proc.pid == os.getpid():
            continue
        uids = info.get("uids")
        if not all_users and (uids is None or uids.real != me) and me != 0:
            continue
        exe = info.get("exe") or ""
        name = info.get("name") or ""
        cmd = info.get("cmdline") or []
        if not ("python" in os.path.basename(exe) or name.startswith("python")):
            continue
        out.append(
            PyProcess(
                pid=proc.pid,
                user=info.get("username") or "?",
                python=python_version(proc.pid, exe),
                agent=agent_state(proc.pid),
                cmdline=" ".join(cmd),
            )
        )
    return out


def run(args: argparse.Namespace) -> int:
    procs = python_processes(args.all)
    if args.json:
        print(json.dumps([asdict(p) for p in procs], indent=2))
        return 0
    print(f"{'PID':>7} {'USER':<10} {'PYTHON':<7} {'AGENT':<10} COMMAND")
    for p in procs:
        print(f"{p.pid:>7} {p.user[:10]:<10} {p.python:<7} {p.agent:<10} {p.cmdline[:100]}")
    return 0
