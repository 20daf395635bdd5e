"""Where agents listen: ``$XDG_RUNTIME_DIR/vmtop/<pid>.sock`` (else ``/tmp/vmtop-<uid>/``).

The directory must be ours: created 0700, and checked with ``lstat`` (a directory, not a
symlink, owned by this uid, no group/other bits) before anything is placed in or read from it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnsafeDirectory(Exception):
    """The socket directory exists but is not safe to use; the message says why and what to do."""


def socket_dir(uid: int | None = None) -> Path:
    uid = os.getuid() if uid is None else uid
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and uid == os.getuid():
        return Path(runtime) / "vmtop"
    return Path(f"/tmp/vmtop-{uid}")


def socket_path(pid: int, uid: int | None = None) -> Path:
    return socket_dir(uid) / f"{pid}.sock"


def check_dir(path: Path, uid: int | None = None) -> None:
    """Raise :class:`UnsafeDirectory` unless ``path`` is a 0700 directory owned by ``uid``."""
    uid = os.getuid() if uid is None else uid
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeDirectory(f"{path} is a symlink; refusing to use it (remove it and retry)")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(
            f"{path} is not a directory; refusing to use it (remove it and retry)"
        )
    if st.st_uid != uid:
        raise UnsafeDirectory(
            f"{path} is owned by uid {st.st_uid}, not {uid}; refusing to use it (remove it and retry)"
        )
    if st.st_mode & 0o077:
        raise UnsafeDirectory(
            f"{path} has mode {stat.S_IMODE(st.st_mode):o}, expected 700; refusing to use it "
            f"(chmod 700 it or remove it)"
        )


def ensure_dir(uid: int | None = None) -> Path:
    """Create the socket directory 0700 if missing; check it either way."""
    path = socket_dir(uid)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    check_dir(path, uid)
    return path
