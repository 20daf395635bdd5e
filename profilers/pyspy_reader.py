"""py-spy's ``--format raw`` output (folded stacks) read into a :class:`StackModel`.

py-spy writes one line per distinct stack, root first: ``frame;frame;... count``, with frames
``function (file:line)`` (``function (file)`` with ``--nolineno``, ``function (lib.so)`` for
native frames). Two kinds of roots are py-spy's own and are mapped to vmtop's names, so a
recorded flamegraph looks like the ones vmtop's own samplers make:

- ``thread (1234): MainThread`` (``--threads``) -> ``thread MainThread`` (the name, like
  :func:`profilers.thread_sampler.thread_root`; the id when the thread has no name);
- ``process 1234:"python app.py"`` (``--subprocesses``) -> ``process 1234 python app.py``.
"""

from __future__ import annotations

import re

from profilers.stacks import Frame, StackModel

_THREAD = re.compile(r"^thread \((0x[0-9a-fA-F]+|\d+)\)(?::\s*(.*))?$")
_PROCESS = re.compile(r'^process (\d+):"?(.*?)"?$')


def parse_frame(text: str) -> Frame:
    """One py-spy frame label as a :class:`Frame` (roots mapped as described above)."""
    m = _THREAD.match(text)
    if m:
        return Frame(f"thread {m.group(2) or m.group(1)}")
    m = _PROCESS.match(text)
    if m:
        return Frame(f"process {m.group(1)} {m.group(2)}".rstrip())
    return Frame.parse(text)


def read_raw(text: str, name: str = "py-spy") -> StackModel:
    """Parse py-spy raw output; a malformed line raises ``ValueError`` naming its number."""
    model = StackModel(unit="samples", name=name)
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        stack, sep, count = line.rpartition(" ")
        if not sep:
            raise ValueError(f"line {lineno}: expected 'frame;frame;... count'")
        try:
            weight = int(count)
        except ValueError:
            raise ValueError(f"line {lineno}: sample count {count!r} is not a number") from None
        # A sample of a thread with no Python frame comes as an empty stack (" 2"): py-spy's
        # own flamegraphs leave it out, and so do we.
        model.add([parse_frame(part) for part in stack.split(";") if part.strip()], weight)
    return model


__all__ = ["parse_frame", "read_raw"]
