"""The HTTP side: prometheus_client's own server on the address given, in this process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server

from vmtop.exporter.collector import SnapshotCollector
from vmtop.exporter.targets import Targets

DEFAULT_LISTEN = ("127.0.0.1", 9465)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (all interfaces); ValueError says why."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"--listen takes HOST:PORT, not {text!r}")
    host = host.strip("[]") if host.startswith("[") else host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen port must be a number from 0 to 65535, not {port!r}")
    return host or "0.0.0.0", int(port)


def serve(targets: Targets, host: str, port: int) -> tuple[str, int, object]:
    """Start serving ``/metrics`` on a daemon thread; returns the bound address and the
    server (``shutdown()`` stops it). Port 0 picks a free one."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(targets))
    httpd, _ = start_http_server(port, addr=host, registry=registry)
    bound = httpd.server_address
    return str(bound[0]), int(bound[1]), httpd
