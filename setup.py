"""Build hook for the optional C extensions (everything else is in pyproject.toml).

Each extension is optional: without a compiler the install still succeeds; the agent then uses
the pure-Python hook in vmtop/agent/step_hooks.py (slower per task step; docs/benchmarks.md)
and attach uses gdb or lldb instead of vmtop's ptrace injector (docs/attach.md).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "vmtop.agent._hooks",
            sources=[
                "vmtop/agent/_hooks.c",
                "vmtop/agent/_registry.c",
                "vmtop/agent/_factory.c",
                "vmtop/agent/_clock.c",
            ],
            depends=["vmtop/agent/_registry.h", "vmtop/agent/_clock.h"],
            optional=True,
        ),
        # Blocking waits that take the GIL back ahead of a busy main thread, for the agent's
        # listener and client threads (docs/attach.md, "Hello latency"). Without it they wait
        # the ordinary way.
        Extension("profilers._priority", sources=["profilers/_priority.c"], optional=True),
        # One cProfile call stack per thread on 3.12+ (profilers/calls.py, ThreadCalls;
        # docs/live-profiles.md). Without it the dispatcher is a slower Python function.
        Extension("profilers._thread_calls", sources=["profilers/_thread_calls.c"], optional=True),
        # The ptrace injector (x86-64 Linux) and the library it loads into a target
        # (vmtop/attach/; docs/attach.md). Without them attach falls back to gdb or lldb.
        Extension("vmtop.attach._ptrace", sources=["vmtop/attach/_ptrace.c"], optional=True),
        Extension(
            "vmtop.attach._payload",
            sources=["vmtop/attach/_payload.c"],
            # glibc < 2.34 keeps dlsym and pthread_create in these (which Python links there
            # too, so nothing new is mapped); newer ones have both in libc and empty stubs here.
            # No debug information: the file is copied for every injection.
            libraries=["dl", "pthread"],
            extra_compile_args=["-g0"],
            optional=True,
        ),
    ]
)
