"""What a target has mapped (``/proc/PID/maps``) and where its files are for us.

The ptrace injector needs three things from here: the address of ``dlopen`` (and ``dlerror``)
in the target's libc, the code ranges of the interpreter itself (a thread stopped there is at a
safe point; one stopped in libc, ld.so or an allocator may hold their locks), and whether a
directory is on a ``noexec`` mount in the target's view (a library written there could not be
mapped). Files are read through ``/proc/PID/root`` so that a target in another mount
namespace is seen as it sees itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from vmtop.attach import elf

# Where dlopen lives: libc itself since glibc 2.34, libdl before; musl's libc is its loader.
_DL_LIBS = (
    re.compile(r"/libc\.so\.6$"),
    re.compile(r"/libc-2\.\d+\.so$"),
    re.compile(r"/libdl(\.so\.2|-2\.\d+\.so)$"),
    re.compile(r"/ld-musl-[^/]+\.so\.1$"),
)
_LIBPYTHON = re.compile(r"/libpython3\.\d+t?\.so")


class MapsError(Exception):
    """Something the injector needs is not in the target's address space."""


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    offset: int
    path: str


def read_maps(pid: int) -> list[Mapping]:
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) < 5:
                continue
            start, end = (int(x, 16) for x in parts[0].split("-"))
            path = parts[5].strip() if len(parts) == 6 else ""
            out.append(Mapping(start, end, parts[1], int(parts[2], 16), path))
    return out


def in_target(pid: int, path: str) -> str:
    """``path`` as the target sees it, for us: through its root directory."""
    return f"/proc/{pid}/root{path}"


def dl_functions(pid: int, maps: list[Mapping]) -> tuple[int, int]:
    """Addresses of ``dlopen`` and ``dlerror`` (0 if missing) in the target."""
    seen: list[str] = []
    for pattern in _DL_LIBS:
        for path in dict.fromkeys(m.path for m in maps if pattern.search(m.path)):
            seen.append(path)
            try:
                symbols, first = elf.dynamic_functions(in_target(pid, path), {"dlopen", "dlerror"})
            except elf.ElfError:
                continue
            if "dlopen" not in symbols:
                continue
            base = min(m.start - m.offset for m in maps if m.path == path) - first
            return base + symbols["dlopen"], base + symbols[
                "dlerror"
            ] if "dlerror" in symbols else 0
    where = ", ".join(os.path.basename(p) for p in seen) or "no libc mapped"
    raise MapsError(f"no dlopen found in the target ({where})")


def interpreter_code(pid: int, maps: list[Mapping], exe: str) -> list[tuple[int, int]]:
    """Executable ranges of the interpreter: its executable and libpython, nothing else."""
    ranges = [
        (m.start, m.end)
        for m in maps
        if "x" in m.perms and (m.path == exe or _LIBPYTHON.search(m.path))
    ]
    if not ranges:
        raise MapsError(f"no interpreter code found in pid {pid}'s mappings")
    return ranges


def noexec(pid: int, path: str) -> bool:
    """Whether ``path`` (as the target sees it) is on a mount with ``noexec`` there."""
    best, flags = "", ""
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            for line in f:
                fields = line.split()
                point, options = fields[4], fields[5]
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, flags = point, options
    except (OSError, IndexError):
        return False
    return "noexec" in flags.split(",")


__all__ = ["Mapping", "MapsError", "dl_functions", "in_target", "interpreter_code", "noexec"]
