"""vmtop: etop/fprof/observer_cli for Python.

REPL entry points (re-exported from the measurement engines in ``profilers``)::

    vmtop.profile(fn, *args)              # sampled call tree
    vmtop.profile(fn, *args, calls=True)  # deterministic CNT / ACC / OWN report
    vmtop.allocations(fn, *args)          # tracemalloc report
    vmtop.gc_pressure(fn, *args)          # gc.callbacks report
    vmtop.agent.start()                   # serve the live monitor from inside this program
"""

from __future__ import annotations

from typing import Any

from vmtop._version import __version__

__all__ = ["__version__", "agent", "allocations", "gc_pressure", "profile"]

_LAZY = {
    "profile": ("profilers.profile", "profile"),
    "allocations": ("profilers.allocations", "allocations"),
    "gc_pressure": ("profilers.gcwatch", "gc_pressure"),
}


def __getattr__(name: str) -> Any:
    # Lazy so that ``import vmtop`` (done by the agent bootstrap in a target) stays cheap.
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name == "agent":
        return importlib.import_module("vmtop.agent")
    raise AttributeError(f"module 'vmtop' has no attribute {name!r}")
