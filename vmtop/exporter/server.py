"""The HTTP side: prometheus_client's own server on the address given, in this process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server

from vmtop.exporter.collector import SnapshotCollector
from vmtop.exporter.targets import Targets


def serve(targets: Targets, host: str, port: int) -> tuple[str, int, object]:
    """Start serving ``/metrics`` on a daemon thread; returns the bound address and the
    server (``shutdown()`` stops it). Port 0 picks a free one."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(targets))
    httpd, _ = start_http_server(port, addr=host, registry=registry)
    bound = httpd.server_address
    return str(bound[0]), int(bound[1]), httpd
