"""``vmtop exporter``: Prometheus metrics of local agents, served from a process of its own.

It is a client like ``vmtop top``: it talks to each target's agent over its Unix socket and
adds no listener inside the target. A scrape takes one snapshot per target (so Prometheus's
scrape interval sets the cost) and turns it into metric families (``families.py``) with
bounded cardinality (``budget.py``); ``targets.py`` finds the targets, ``collector.py`` is the
prometheus_client collector that ties them together, ``server.py`` the HTTP side.
"""
