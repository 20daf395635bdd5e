"""What ``vmtop COMMAND`` imports before it does its work: the start-up an attach's latency
includes (docs/attach.md, "Attach latency"). Each test runs the real CLI entry point in a
fresh interpreter and reads its ``sys.modules`` afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_helpers import Target
from vmtop.cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent

# Run ``vmtop.cli.main(argv)`` and print the loaded modules that start with one of PREFIXES.
PROBE = """
import json, sys
from vmtop.cli import main
argv, prefixes = json.loads(sys.argv[1]), tuple(json.loads(sys.argv[2]))
try:
    code = main(argv)
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in sys.modules if m.startswith(prefixes))
print(json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""


def loaded_after(argv: list[str], prefixes: list[str]) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(prefixes)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    result = json.loads(proc.stderr.strip().splitlines()[-1])
    return result["code"], result["loaded"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_imports_only_its_own_module(command: str) -> None:
    code, loaded = loaded_after([command, "--help"], ["vmtop.cli."])
    assert code == 0
    assert [m for m in loaded if m.endswith("_cmd")] == [f"vmtop.cli.{command}_cmd"]


def test_vmtop_help_still_lists_every_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vmtop", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0
    # Each command starts a line indented by 4 (its help, and wrapped help lines, by more).
    lines = proc.stdout.splitlines()
    listed = [line.split()[0] for line in lines if len(line) - len(line.lstrip()) == 4]
    assert listed == COMMANDS


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    with Target("agent_target.py") as t:
        yield t


def test_top_json_on_an_agent_loads_no_fallback_injector_view_or_tui(target: Target) -> None:
    heavy = [
        "textual",
        "vmtop.tui",
        "vmtop.views",  # --json prints no table
        "vmtop.fleet",  # no --subprocesses
        "vmtop.peek",  # no --peek
        "vmtop.attach.gdb_inject",  # fallbacks: loaded only when tried
        "vmtop.attach.lldb_inject",
        "vmtop.attach.remote_exec",
    ]
    code, loaded = loaded_after(["top", str(target.pid), "--once", "--json", "-i", "0.05"], heavy)
    assert code == 0
    assert loaded == []
