"""Other users stay out; the socket directory must be ours; nothing sent is ever run.

Tests that need a second local user create one (``useradd --system``) when run as root and
delete it afterwards; they are skipped, with the reason, otherwise.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import vmtop.agent
from tests.agent_helpers import TARGETS
from tests.fault_helpers import FaultTarget, LineReader, digest, hello, raw_connect
from vmtop import protocol
from vmtop.agent.collector import Collector
from vmtop.agent.server import Server
from vmtop.client import AgentClient
from vmtop.paths import UnsafeDirectory

pytestmark = pytest.mark.internals  # runs under every supported Python in CI

ROOT = Path(__file__).resolve().parent.parent
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="creating a second local user (useradd) and running as it needs root"
)

# Every op the agent serves. A new op is a security decision: describe what it can do to the
# target in docs/security.md, then add it here.
DOCUMENTED_OPS = {
    "hello",
    "snapshot",
    "detail",
    "cancel",
    "bye",
    "job_start",
    "job_status",
    "job_cancel",
    "job_result",
}


# -- a second, unprivileged user ----------------------------------------------------------------
class OtherUser:
    def __init__(self, name: str) -> None:
        self.name = name
        entry = pwd.getpwnam(name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.python = self._find_python()

    def _find_python(self) -> str:
        # Our interpreter may live where the other user cannot go (/root/.pyenv...).
        for python in (sys.executable, "/usr/bin/python3", shutil.which("python3") or ""):
            try:
                if python and self.run(python, "-c", "pass").returncode == 0:
                    return python
            except OSError:  # not even executable for them
                continue
        pytest.skip(f"no Python interpreter that user {self.name} may run")

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
            cwd="/",
        )

    def python_json(self, code: str, *args: str) -> dict[str, str]:
        proc = self.run(self.python, "-c", code, *args)
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def other_user() -> Iterator[OtherUser]:
    if not IS_ROOT:
        pytest.skip("creating a second local user (useradd) and running as it needs root")
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("useradd/userdel are not installed")
    name = f"vmtop-test-{secrets.token_hex(3)}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        yield OtherUser(name)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture
def open_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An XDG_RUNTIME_DIR that everybody may enter, so the only barriers left are vmtop's own
    (the 0700 ``vmtop/`` directory, the 0600 socket, the peer uid check) -- and the real
    /tmp/vmtop-<uid> is left alone."""
    path = Path(tempfile.mkdtemp(prefix="vmtop-sec-"))
    path.chmod(0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(path))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


PROBE = """
import json, os, socket, sys
path = sys.argv[1]
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except OSError as exc:
        out[name] = type(exc).__name__
attempt("list_runtime", lambda: os.listdir(os.path.dirname(os.path.dirname(path))))
attempt("list_dir", lambda: os.listdir(os.path.dirname(path)))
attempt("stat", lambda: os.stat(path))
attempt("open", lambda: open(path, "rb"))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
attempt("connect", lambda: s.connect(path))
if out["connect"] == "ok":
    try:
        s.sendall(b'{"id":1,"op":"hello","args":{"protocol":1}}\\n')
        out["reply"] = s.recv(65536).decode()
    except OSError as exc:
        out["reply"] = type(exc).__name__
print(json.dumps(out))
"""


@needs_root
def test_other_user_cannot_connect_or_read_the_socket(
    other_user: OtherUser, open_runtime_dir: Path
) -> None:
    with FaultTarget() as target:
        assert target.socket.parent == open_runtime_dir / "vmtop"
        out = other_user.python_json(PROBE, str(target.socket))
        assert out == {
            "list_runtime": "ok",  # the runtime dir is open: vmtop's own dir is the barrier
            "list_dir": "PermissionError",
            "stat": "PermissionError",
            "open": "PermissionError",
            "connect": "PermissionError",
        }
        # The target's owner still gets in, and the target noticed nothing.
        with AgentClient(target.pid) as client:
            assert client.snapshot(limit=1).node.pid == target.pid
        assert target.check(100) == digest(100)


@needs_root
def test_peer_uid_check_refuses_other_users_even_past_open_permissions(
    other_user: OtherUser,
    open_runtime_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Permissions relaxed on purpose, in a throw-away directory (not the agent's own code
    path): the other user reaches the socket, and SO_PEERCRED still keeps it out."""
    relaxed = Path(tempfile.mkdtemp(prefix="vmtop-relaxed-"))
    relaxed.chmod(0o755)
    path = relaxed / "agent.sock"
    server = Server(Collector(), path=path)
    server.start()
    try:
        path.chmod(0o666)
        with caplog.at_level(logging.WARNING, logger="vmtop.agent"):
            out = other_user.python_json(PROBE, str(path))
            assert out["connect"] == "ok"
            # Closed at once, nothing said (whether before or after the hello went out).
            assert out["reply"] in ("", "ConnectionResetError", "BrokenPipeError")
            assert server.rejected == 1
            # The target's own user (root here) is served on the same socket.
            sock = raw_connect(path)
            reader = hello(sock)
            sock.sendall(protocol.encode({"id": 2, "op": "bye", "args": {}}))
            assert reader.line() == {"id": 2, "ok": True, "result": {}}
            sock.close()
        assert any(
            f"refused a client of uid {other_user.uid}" in r.getMessage() for r in caplog.records
        )
    finally:
        server.stop()
        shutil.rmtree(relaxed, ignore_errors=True)
    assert not path.exists()


# -- the socket directory must be ours --------------------------------------------------------
def make_unsafe(kind: str, runtime: Path) -> tuple[Path, str]:
    """Pre-create ``runtime/vmtop`` the unsafe way; returns it and the refusal we expect."""
    d = runtime / "vmtop"
    if kind == "symlink":
        real = runtime / "elsewhere"
        real.mkdir(mode=0o700)
        d.symlink_to(real)
        return d, f"{d} is a symlink; refusing to use it (remove it and retry)"
    d.mkdir()
    if kind == "mode":
        d.chmod(0o755)
        return d, f"{d} has mode 755, expected 700; refusing to use it (chmod 700 it or remove it)"
    if kind == "file":
        d.rmdir()
        d.write_text("")
        return d, f"{d} is not a directory; refusing to use it (remove it and retry)"
    d.chmod(0o700)
    os.chown(d, 65534, 65534)
    return (
        d,
        f"{d} is owned by uid 65534, not {os.getuid()}; refusing to use it (remove it and retry)",
    )


UNSAFE = [
    "symlink",
    "mode",
    "file",
    pytest.param("owner", marks=needs_root),
]


@pytest.mark.parametrize("kind", UNSAFE)
def test_unsafe_socket_directory_is_refused(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    d, message = make_unsafe(kind, tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    # The API: strict raises the reason; the default logs it and leaves the program alone.
    with pytest.raises(UnsafeDirectory) as info:
        vmtop.agent.start(strict=True)
    assert str(info.value) == message
    assert vmtop.agent.start() is None and not vmtop.agent.is_running()
    # `vmtop run`: the program runs, without an agent, after one line saying why.
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "vmtop", "run", str(TARGETS / "exit_code.py"), "0"],
        input="hi\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert run.returncode == 0 and json.loads(run.stdout)["stdin"] == "hi"
    assert run.stderr.splitlines() == [f"vmtop agent not started: {message}"]
    # A client refuses to look there too: one line, exit 2.
    top = subprocess.run(
        [sys.executable, "-m", "vmtop", "top", str(os.getpid()), "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert top.returncode == 2
    assert top.stderr.splitlines() == [f"vmtop top: error: {message}"]
    # Nothing was created, moved or removed.
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    if kind != "file":
        assert stat.S_ISLNK(os.lstat(d).st_mode) == (kind == "symlink")


# -- nothing sent over the socket is run --------------------------------------------------------
AGENT_SIDE = sorted(
    [*(ROOT / "vmtop" / "agent").rglob("*.py"), ROOT / "vmtop" / "protocol.py"]
    + [p for p in (ROOT / "vmtop" / "job_payloads.py",) if p.exists()]
)
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "breakpoint", "execfile"}
FORBIDDEN_ATTRS = {
    ("pickle", "loads"),
    ("pickle", "load"),
    ("marshal", "loads"),
    ("marshal", "load"),
    ("importlib", "import_module"),
    ("os", "system"),
    ("os", "popen"),
    ("os", "execv"),
    ("os", "execvp"),
    ("runpy", "run_path"),
    ("runpy", "run_module"),
    ("yaml", "load"),
}
FORBIDDEN_MODULES = {"pickle", "marshal", "shelve", "dill", "subprocess", "runpy", "code", "codeop"}
# Where client data is dispatched: attribute names must be literals (no getattr(self, op)).
DISPATCH = {"server.py", "protocol.py", "manager.py"}  # manager.py: the agent's job ops


def test_agent_code_evaluates_nothing_it_is_sent() -> None:
    assert len(AGENT_SIDE) > 5
    problems = []
    for path in AGENT_SIDE:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names.append(getattr(node, "module", None) or "")
                bad = {n.split(".")[0] for n in names} & FORBIDDEN_MODULES
                if bad:
                    problems.append(f"{where}: imports {bad}")
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                problems.append(f"{where}: calls {func.id}()")
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and (func.value.id, func.attr) in FORBIDDEN_ATTRS
            ):
                problems.append(f"{where}: calls {func.value.id}.{func.attr}()")
            if (
                path.name in DISPATCH
                and isinstance(func, ast.Name)
                and func.id in ("getattr", "setattr", "delattr")
                and len(node.args) >= 2
                and not isinstance(node.args[1], ast.Constant)
            ):
                problems.append(f"{where}: {func.id}() with a computed attribute name")
    assert problems == []


@pytest.fixture(scope="module")
def target() -> Iterator[FaultTarget]:
    with FaultTarget("--tasks", "5") as t:
        yield t


def test_ops_are_the_documented_list_and_nothing_else_is_served(target: FaultTarget) -> None:
    assert set(protocol.OPS) == DOCUMENTED_OPS, "a new op: document it in docs/security.md first"
    sock = raw_connect(target.socket)
    reader = LineReader(sock)
    sock.sendall(protocol.encode({"id": 0, "op": "hello", "args": {"protocol": 1}}))
    greeting = reader.line()
    assert greeting is not None and greeting["result"]["ops"] == list(protocol.OPS)
    others = [
        "eval", "exec", "import", "run", "shell", "system", "compile", "pickle", "load",
        "__init__", "__class__", "_handle", "handle", "setattr", "getattr", "attach",
        "SNAPSHOT", " snapshot", "snapshot\x00", "hello ", "cancel_all", "job", "jobs.handle",
        "", "\u202esnapshot",
    ]  # fmt: skip
    for i, op in enumerate(others, start=1):
        sock.sendall(
            protocol.encode({"id": i, "op": op, "args": {"code": "__import__('os')._exit(9)"}})
        )
        reply = reader.line()
        assert reply is not None and reply["id"] == i
        assert reply["ok"] is False and reply["error"]["code"] == "unknown_op", (op, reply)
    sock.close()
    assert target.check(100) == digest(100)  # still running, still itself


def test_cancel_is_logged_in_the_target() -> None:
    with FaultTarget("--tasks", "5") as target:
        with AgentClient(target.pid) as client:
            (row,) = client.snapshot(filter="idle-00003", kinds=("task",)).rows
            assert client.cancel(row.key)["cancel_requested"] is True
        target.stop()
        assert target.proc.stderr is not None
        err = target.proc.stderr.read()
    line = (
        f"vmtop: cancelling task 'idle-00003' ({row.key}) at the request of "
        f"pid {os.getpid()} uid {os.getuid()}"
    )
    assert line in err.splitlines()


def test_socket_is_0600_in_a_0700_directory(target: FaultTarget) -> None:
    assert stat.S_IMODE(os.lstat(target.socket).st_mode) == 0o600
    st = os.lstat(target.socket.parent)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.getuid()
