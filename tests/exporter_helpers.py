"""Processes the exporter tests run: the exporter itself, a real Prometheus, and their HTTP."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


class Exporter:
    """``vmtop exporter ARGS --listen 127.0.0.1:0``; ``url`` from the line it prints."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vmtop", "exporter", *args, "--listen", "127.0.0.1:0"],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        self.lines: list[str] = []
        for line in self.proc.stderr:  # blocking: the exporter prints this once it listens
            self.lines.append(line)
            m = re.search(r"serving (http://\S+/metrics)", line)
            if m:
                self.url = m.group(1)
                return
        raise AssertionError(f"exporter exited ({self.proc.wait()}): {''.join(self.lines)}")

    def scrape(self) -> str:
        return get(self.url)

    def stop(self) -> str:
        """Stop it (SIGTERM) and return everything it printed."""
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=30)
        return "".join(self.lines) + (err or "")


class Prometheus:
    """A real Prometheus scraping ``targets`` every second, with a temporary config and data
    directory, on a free loopback port."""

    def __init__(self, tmp: Path, targets: list[str]) -> None:
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: vmtop\n    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / "prometheus.log", "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
            env={**os.environ, "HOME": str(tmp)},
        )

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        body = json.loads(get(url))
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def wait_for(self, promql: str, ok: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Query until ``ok(result)``: Prometheus scrapes on its own clock, so the test polls
        its API (the observable state), with a deadline."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prometheus exited: see prometheus.log"
            try:
                result = self.query(promql)
            except OSError:
                result = []  # not listening yet
            if ok(result):
                return result
            time.sleep(0.5)
        raise AssertionError(f"{promql}: still {result} after {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard, its variables filled in as Grafana
    would with "All" selected."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", ())]
    return [
        e.replace("$program", ".*").replace("$pid", ".*").replace("$__rate_interval", "1m")
        for e in exprs
    ]
