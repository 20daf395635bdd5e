"""The library an injector loads into a target, one fresh file per injection.

``_payload.c`` is built at install time. For each injection we copy it with the bootstrap
source written into its slot (see that file) to a new, uniquely named file: ``dlopen`` of a
path that is already loaded returns the old handle without running the constructor again, and
a library is never unloaded (vmtop never calls ``dlclose``; it is opened RTLD_NODELETE).

The file must be where the **target** can open and map it: a directory on a mount without
``noexec`` in the target's view, readable by the target's user (we chown it when we are root),
written through ``/proc/PID/root`` when the target lives in another mount namespace. The
caller removes the file once ``dlopen`` returned: the mapping keeps it alive.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import os
from pathlib import Path

from vmtop.attach.checks import AttachError, Target
from vmtop.attach.maps import in_target, noexec

HERE = Path(__file__).resolve().parent
SLOT_EMPTY = b"vmtop-bootstrap-slot:EMPTY:v1\0"
SLOT_READY = b"vmtop-bootstrap-slot:READY:v1\0"
HEADER_SIZE = 32
SLOT_SIZE = 16 * 1024  # as in _payload.c
# Where to put the library, in the target's view, after the caller's own directory.
FALLBACK_DIRS = ("/dev/shm", "/tmp", "/var/tmp")


def built(name: str) -> Path | None:
    """The installed extension ``vmtop/attach/<name>`` for this interpreter, if it was built."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = HERE / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def patched(source: str) -> bytes:
    """The payload library's bytes with ``source`` in its slot."""
    path = built("_payload")
    if path is None:
        raise AttachError(
            "the injector's library was not built at install (no C compiler then?): "
            "reinstall vmtop with gcc and the Python headers present"
        )
    data = bytearray(path.read_bytes())
    at = data.find(SLOT_EMPTY)
    text = source.encode() + b"\0"
    if at < 0:
        raise AttachError(f"{path.name} has no bootstrap slot: reinstall vmtop")
    if len(text) > SLOT_SIZE - HEADER_SIZE:
        raise AttachError("the bootstrap is larger than the library's slot")
    data[at : at + len(SLOT_READY)] = SLOT_READY
    data[at + HEADER_SIZE : at + HEADER_SIZE + len(text)] = text
    return bytes(data)


def _usable(target: Target, directory: str) -> bool:
    ours = in_target(target.pid, directory)
    return os.path.isdir(ours) and not noexec(target.pid, directory)


def write(target: Target, source: str, own_dir: Path | None) -> tuple[str, Path]:
    """Write a fresh copy; returns (its path for the target, its path for us).

    ``own_dir``: the attach's private directory, our path to it (through ``/proc/PID/root``
    for a target in another mount namespace); tried first, then :data:`FALLBACK_DIRS`."""
    data = patched(source)
    tried = []
    dirs = [target.unview(own_dir)] if own_dir is not None else []
    for directory in [*dirs, *FALLBACK_DIRS]:
        tried.append(directory)
        if not _usable(target, directory):
            continue
        name = f"vmtop-agent-{target.pid}-{os.urandom(6).hex()}.so"  # secrets costs 7 ms
        theirs = os.path.join(directory, name)
        ours = Path(in_target(target.pid, theirs))
        try:
            fd = os.open(ours, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError:
            continue
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(ours, 0o644)
            if os.geteuid() == 0 and target.uid != 0:
                os.chown(ours, target.uid, target.gid)
        except OSError:
            remove(ours)
            continue
        return theirs, ours
    raise AttachError(
        "no directory where the target can map a library (tried "
        + ", ".join(tried)
        + ": missing, unwritable or mounted noexec)"
    )


def remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


__all__ = ["built", "patched", "remove", "write"]
