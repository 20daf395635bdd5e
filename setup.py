"""Build hook for the optional C step hook (everything else is in pyproject.toml).

The extension is optional: without a compiler the install still succeeds and the agent uses
the pure-Python hook in vmtop/agent/step_hooks.py (slower per task step; docs/benchmarks.md).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "vmtop.agent._hooks",
            sources=["vmtop/agent/_hooks.c", "vmtop/agent/_registry.c"],
            depends=["vmtop/agent/_registry.h"],
            optional=True,
        )
    ]
)
