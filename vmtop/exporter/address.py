"""The ``--listen`` address of the exporter (no prometheus_client import: the CLI parser
reads the default)."""

from __future__ import annotations

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
