"""``vmtop ps``: Python processes of this user as a tree (parent -> workers), their version,
and whether an agent listens in each, in a container too (:mod:`vmtop.discovery`; host pids)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from vmtop.fleet.tree import as_tree, python_processes


def register(sub: Any) -> None:
    p = sub.add_parser(
        "ps",
        help="list Python processes as a tree (parent -> workers) and whether a vmtop agent "
        "listens in each",
    )
    p.add_argument("--all", action="store_true", help="every user's processes (root sees all)")
    p.add_argument("--json", action="store_true", help="one JSON array (with each ppid)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    tree = as_tree(python_processes(args.all))
    if args.json:
        print(json.dumps([{**asdict(p), "depth": depth} for depth, p in tree], indent=2))
        return 0
    print(f"{'PID':>7} {'PPID':>7} {'USER':<10} {'PYTHON':<7} {'AGENT':<10} COMMAND")
    for depth, p in tree:
        branch = "  " * (depth - 1) + "└─ " if depth else ""
        print(
            f"{p.pid:>7} {p.ppid:>7} {p.user[:10]:<10} {p.python:<7} {p.agent:<10} "
            f"{branch}{p.cmdline[:100]}"
        )
    return 0
