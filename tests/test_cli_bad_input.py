"""Bad command-line input, for every command in ``vmtop.cli.COMMANDS``: one line on stderr,
exit code 2, no traceback, and nothing run.

Two layers: every option of every registered command (read from the parsers, so a command
added later is covered too) gets values of the wrong kind, parsed in-process (nothing can run:
only ``parse_args`` is called); and a table of concrete mistakes goes through the real CLI.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.agent_helpers import TARGETS
from vmtop.cli import COMMANDS, build_parser

SCRIPT = str(TARGETS / "exit_code.py")  # prints one JSON line if it ever runs


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: action.choices[name] for name in COMMANDS}


def dead_pid() -> int:
    """A pid that no process has right now (a child we started and reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def context(parser: argparse.ArgumentParser) -> list[str]:
    """What the command needs besides the option under test: its required options, then a
    pid or a script."""
    out: list[str] = []
    for a in parser._actions:
        if a.required and a.option_strings:
            out += [a.option_strings[0], "out.svg" if a.dest == "output" else "1"]
    dests = {a.dest for a in parser._actions}
    if "pid" in dests and any(a.dest == "pid" and not a.option_strings for a in parser._actions):
        return [*out, "4194304"]  # above the kernel's pid_max: never a live process
    if "target_args" in dests:
        return [*out, SCRIPT]
    return out


def typed_options() -> Iterator[tuple[str, str, str]]:
    for name, parser in subparsers().items():
        for action in parser._actions:
            if action.type is None or action.type is str:
                continue
            label = action.option_strings[0] if action.option_strings else action.dest
            for value in ("abc", "", "nan", "-1", "1e999"):
                yield name, label, value


def choice_options() -> Iterator[tuple[str, str]]:
    for name, parser in subparsers().items():
        for action in parser._actions:
            if action.choices and action.option_strings:
                yield name, action.option_strings[0]


def parse_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    out, err = capsys.readouterr()
    assert info.value.code == 2, (argv, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, (argv, err)
    return lines[0]


def test_the_commands_are_the_ones_this_file_was_written_for() -> None:
    # New commands get the generic checks below; give them concrete rows in TABLE too.
    assert {"run", "top", "ps", "attach", "demo", "profile", "allocations", "gc"} <= set(COMMANDS)


@pytest.mark.parametrize(("command", "option", "value"), list(typed_options()))
def test_wrong_kind_of_value(
    command: str, option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = subparsers()[command]
    ctx = context(parser)
    # An option gets the bad value; a positional (the pid) is the bad value itself.
    argv = [command, option, value, *ctx] if option.startswith("-") else [command, value]
    line = parse_error(argv, capsys)
    assert line.startswith(f"vmtop {command}: error: argument ")
    assert option in line or option.lstrip("-") in line


@pytest.mark.parametrize(("command", "option"), list(choice_options()))
def test_value_outside_the_choices(
    command: str, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = context(subparsers()[command])
    line = parse_error([command, option, "bogus", *ctx], capsys)
    assert "invalid choice: 'bogus'" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_option(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = context(subparsers()[command])
    line = parse_error([command, "--no-such-option", *ctx], capsys)
    assert "--no-such-option" in line


@pytest.mark.parametrize(
    "command",
    [
        name
        for name, p in subparsers().items()
        if any(a.required and not a.option_strings for a in p._actions)
        and not any(a.dest == "target_args" for a in p._actions)
    ],
)
def test_missing_required_argument(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = parse_error([command], capsys)
    assert "the following arguments are required" in line


# -- the real CLI, end to end -------------------------------------------------------------------
TARGET_COMMANDS = [
    name for name, p in subparsers().items() if any(a.dest == "target_args" for a in p._actions)
]
OUTPUT_COMMANDS = [
    name for name, p in subparsers().items() if any(a.dest == "output" for a in p._actions)
]
PID_COMMANDS = [name for name, p in subparsers().items() if "pid" in {a.dest for a in p._actions}]

TABLE: list[tuple[list[str], str]] = [
    (["top", "12ab"], "pid must be a number, not '12ab'"),
    (["top", "0"], "pid must be positive, not 0"),
    (["top", "-5"], "pid must be positive, not -5"),
    (["top", "{dead}", "--once"], "no process with pid {dead}"),
    (["top", "1", "-i", "0"], "interval must be between 0.05 and 3600 s"),
    (["top", "1", "-i", "100000"], "interval must be between 0.05 and 3600 s"),
    (["top", "1", "--count", "0"], "expected a positive number, not 0"),
    (["top", "1", "-n", "ten"], "expected a whole number, not 'ten'"),
    (["top", "1", "--kinds", "tasks"], "--kinds takes task, thread and/or queue"),
    (["top", "1", "--sort", "cpu"], "invalid choice: 'cpu'"),
    (["attach", "-i", "0.001", "1"], "interval must be between 0.05 and 3600 s"),
    (["attach", "{dead}", "--no-inject"], "no process with pid {dead}"),
    (["demo", "--idle", "lots"], "idle must be a whole number, not 'lots'"),
    (["demo", "-i", "0"], "interval must be between 0.05 and 3600 s"),
    (["ps", "--all", "5"], "unrecognized arguments: 5"),
    (["profile", "-o", "/proc/nope/out.svg", SCRIPT], "cannot write /proc/nope/out.svg"),
    (["profile", "-o", "out.xyz", SCRIPT], "unknown output format '.xyz'"),
    (["profile", "-o", "/tmp", SCRIPT], "no output format suffix"),
    (["profile", "-o", "out.pstats", SCRIPT], "pstats output needs call counts: add --calls"),
    (["profile", "--sort", "acc", SCRIPT], "--sort applies to the --calls report only"),
    (["profile", "-i", "0", SCRIPT], "interval must be between 0 and 10 s"),
    (["profile", "--pid", "{dead}", "-d", "1"], "no process with pid {dead}"),
    (["profile", "--pid", "1", "-d", "-3"], "duration must be between 0 and 3600 s"),
    (["profile", "--task", "a", "--thread", "b", SCRIPT], "not allowed with argument --task"),
    (["allocations", "-o", "/proc/nope/a.svg", SCRIPT], "cannot write /proc/nope/a.svg"),
    (["allocations", "-o", "a.xyz", SCRIPT], "unknown output format '.xyz'"),
    (["allocations", "--depth", "0", SCRIPT], "depth must be between 1 and 65535"),
    (["gc", "--pid", "{dead}"], "no process with pid {dead}"),
    (["gc", "-d", "5", SCRIPT], "-d needs --pid PID"),
    (["top", "1", "--subprocesses", "--peek"], "--peek shows one process"),
    (["attach", "1", "--subprocesses", "--peek"], "--peek shows one process"),
    (["exporter"], "give the PIDs to export, or --all (not both)"),
    (["exporter", "--all", "1"], "give the PIDs to export, or --all (not both)"),
    (["exporter", "--all", "--subprocesses"], "--all already includes every subprocess"),
    (["exporter", "{dead}"], "no process with pid {dead}"),
    (["exporter", "12ab"], "pid must be a number, not '12ab'"),
    (["exporter", "--all", "--listen", "nowhere"], "--listen takes HOST:PORT, not 'nowhere'"),
    (["exporter", "--all", "--listen", "h:99999"], "--listen port must be a number from 0 to"),
    *[([name], "no script given") for name in TARGET_COMMANDS],
    *[([name, "/nonexistent/app.py"], "no such script") for name in TARGET_COMMANDS],
    *[
        ([name, "-m", "no_such_module_xyz"], "no module named no_such_module_xyz")
        for name in TARGET_COMMANDS
    ],
    *[([name, "-o", "/proc/nope/out.svg", SCRIPT], "cannot write") for name in OUTPUT_COMMANDS],
    *[([name, "-o", "out.unknown", SCRIPT], "unknown output format") for name in OUTPUT_COMMANDS],
]
XFAIL: dict[tuple[str, ...], str] = {}


def table_params() -> Iterator[object]:
    for argv, expected in TABLE:
        reason = XFAIL.get(tuple(argv))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        yield pytest.param(argv, expected, marks=marks, id=" ".join(argv))


def run_cli(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmtop", *argv],
        input="unused\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[str, subprocess.CompletedProcess[str]]]:
    """Every row of TABLE run once, a few at a time (each is a fresh interpreter)."""
    dead = str(dead_pid())
    rows = {" ".join(argv): [a.replace("{dead}", dead) for a in argv] for argv, _ in TABLE}
    with ThreadPoolExecutor(max_workers=6) as pool:
        done = dict(zip(rows, pool.map(run_cli, rows.values()), strict=True))
    return {key: (dead, proc) for key, proc in done.items()}


@pytest.mark.parametrize(("argv", "expected"), list(table_params()))
def test_concrete_bad_input(
    argv: list[str],
    expected: str,
    results: dict[str, tuple[str, subprocess.CompletedProcess[str]]],
) -> None:
    dead, proc = results[" ".join(argv)]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(("vmtop: error: ", f"vmtop {argv[0]}: error: "))
    assert expected.replace("{dead}", dead) in lines[0]
    assert proc.stdout == ""  # the program (it prints a JSON line) never ran
