"""Addresses of exported functions in a 64-bit ELF shared object, read from the file itself.

The ptrace injector calls ``dlopen`` in the target, so it needs that function's address in the
target's copy of libc: the library's load address there (from ``/proc/PID/maps``) plus the
symbol's value in the file the target mapped (read through ``/proc/PID/root``, so a target
in a container with its own libc is read right). Only the dynamic symbol table is read:
exported functions are all there, and stripped libraries keep it.
"""

from __future__ import annotations

import struct
from pathlib import Path

PT_LOAD = 1
SHT_DYNSYM = 11
STT_FUNC = 2


class ElfError(Exception):
    """The file is not a 64-bit little-endian ELF object we can read."""


def _header(data: bytes) -> tuple[int, int, int, int, int, int, int]:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ElfError("not a 64-bit little-endian ELF file")
    # e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", data, 0x36)
    return phoff, shoff, phentsize, phnum, shentsize, shnum, shstrndx


def first_load_vaddr(data: bytes) -> int:
    """The virtual address of the first PT_LOAD segment (0 for ordinary shared objects)."""
    phoff, _, phentsize, phnum, *_ = _header(data)
    for i in range(phnum):
        p_type, _, _, p_vaddr = struct.unpack_from("<IIQQ", data, phoff + i * phentsize)
        if p_type == PT_LOAD:
            return int(p_vaddr) & ~0xFFF
    raise ElfError("no loadable segment")


def function_symbols(data: bytes, names: set[str]) -> dict[str, int]:
    """``{name: value}`` for the defined functions among ``names`` (default versions win)."""
    _, shoff, _, _, shentsize, shnum, _ = _header(data)
    found: dict[str, int] = {}
    for i in range(shnum):
        sh = struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
        if sh[1] != SHT_DYNSYM:
            continue
        offset, size, link, entsize = sh[4], sh[5], sh[6], sh[9] or 24
        strtab = struct.unpack_from("<IIQQQQIIQQ", data, shoff + link * shentsize)
        str_off = strtab[4]
        for j in range(size // entsize):
            st_name, st_info, _, st_shndx, st_value, _ = struct.unpack_from(
                "<IBBHQQ", data, offset + j * entsize
            )
            if st_shndx == 0 or st_value == 0 or (st_info & 0xF) != STT_FUNC:
                continue
            end = data.index(b"\0", str_off + st_name)
            name = data[str_off + st_name : end].decode("ascii", "replace")
            if name in names and name not in found:
                found[name] = int(st_value)
    return found


def read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ElfError(f"cannot read {path}: {exc.strerror or exc}") from None


__all__ = ["ElfError", "first_load_vaddr", "function_symbols", "read"]
