"""Several agents at once: a process and its workers (``--subprocesses``), or every agent of
this user (``vmtop exporter --all``). Client side only: each agent is still asked over its own
Unix socket, one connection per process."""
