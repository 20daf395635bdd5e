"""Run by every Python that inherits ``vmtop run``'s environment (this directory is first on
``PYTHONPATH``): start the vmtop agent of this process (``vmtop/agent/children.py``), after
the ``sitecustomize`` this file hides, if there is one further along the path."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys


def _load_hidden_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _start_agent() -> None:
    if os.environ.get("VMTOP_CHILD_AGENTS") != "1":
        return
    try:
        from vmtop.agent.children import start_in_child
    except Exception:
        return  # vmtop is not installed for this interpreter: run without an agent
    start_in_child()


try:
    _load_hidden_sitecustomize()
finally:
    _start_agent()
