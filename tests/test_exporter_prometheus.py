"""``vmtop exporter`` end to end: real targets, the exporter process, a real Prometheus
(Debian package ``prometheus``) scraping it, and the PromQL API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_helpers import Target, vmtop_cmd
from tests.exporter_helpers import PROMETHEUS, Exporter, Prometheus, dashboard_queries
from vmtop.client import wait_exit

pytest.importorskip("prometheus_client")
pytestmark = pytest.mark.slow


@pytest.fixture
def target() -> Iterator[Target]:
    with Target("handlers_target.py") as t:
        yield t


@pytest.mark.skipif(not os.access(PROMETHEUS, os.X_OK), reason=f"no prometheus at {PROMETHEUS}")
def test_prometheus_scrapes_vmtop_series_and_group_steps_increase(
    target: Target, tmp_path: Path
) -> None:
    exporter = Exporter(str(target.pid))
    prom = Prometheus(tmp_path, [exporter.url.split("/")[2]])
    try:
        pid = f'pid="{target.pid}"'
        names = prom.wait_for(
            f'count by (__name__) ({{__name__=~"vmtop_.+", {pid}}})',
            lambda r: (
                {"vmtop_loop_lag_seconds", "vmtop_gc_collections_total"}
                <= {s["metric"]["__name__"] for s in r}
            ),
        )
        got = {s["metric"]["__name__"] for s in names}
        for name in (
            "vmtop_target_info", "vmtop_resident_memory_bytes", "vmtop_cpu_seconds_total",
            "vmtop_threads", "vmtop_tasks", "vmtop_loop_ready_callbacks",
            "vmtop_gc_pause_seconds_total",
        ):  # fmt: skip
            assert name in got, (name, sorted(got))
        [info] = prom.query(f"vmtop_target_info{{{pid}}}")
        assert info["metric"]["program"] == "handlers_target"
        # A group's steps, in Prometheus, increasing from scrape to scrape.
        steps = f'vmtop_group_steps_total{{{pid}, coro="handle_request"}}'
        series = prom.wait_for(f"{steps}[1m]", lambda r: r and len(r[0]["values"]) >= 3)
        values = [float(v) for _, v in series[0]["values"]]
        assert values == sorted(values) and values[-1] > values[0], values
        created = prom.wait_for(f"rate(vmtop_tasks_created_total{{{pid}}}[5s])", bool)
        assert float(created[0]["value"][1]) > 0
        # Every query of the Grafana dashboard is valid PromQL and finds data.
        empty = [q for q in dashboard_queries() if not prom.query(q)]
        assert not empty, empty
    finally:
        prom.stop()
        exporter.stop()


def test_a_target_that_exits_drops_out_and_is_reported_once(target: Target) -> None:
    exporter = Exporter(str(target.pid))
    try:
        assert f'pid="{target.pid}"' in exporter.scrape()
        target.proc.stdin.close()  # type: ignore[union-attr]
        assert wait_exit(target.pid, 20)
        for _ in range(3):
            text = exporter.scrape()
            assert f'pid="{target.pid}"' not in text
            assert "vmtop_exporter_targets 0.0" in text
    finally:
        log = exporter.stop()
    assert log.count(f"pid {target.pid} exited") == 1, log


def test_a_pid_without_an_agent_is_reported_once() -> None:
    bare = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    exporter = Exporter(str(bare.pid))
    try:
        for _ in range(3):
            assert "vmtop_exporter_targets 0.0" in exporter.scrape()
    finally:
        log = exporter.stop()
        bare.kill()
        bare.wait()
    assert log.count(f"no vmtop agent in pid {bare.pid}") == 1, log


def test_subprocesses_exports_forked_workers(tmp_path: Path) -> None:
    script = tmp_path / "forker.py"
    script.write_text(
        "import os, sys, json\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    sys.stdin.read(); os._exit(0)\n"
        'print(json.dumps({"ready": True, "child": child}), flush=True)\n'
        "sys.stdin.read(); os.kill(child, 9); os.waitpid(child, 0)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmtop", "run", "-q", str(script)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    child = int(json.loads(proc.stdout.readline())["child"])
    exporter = Exporter(str(proc.pid), "--subprocesses")
    try:
        text = exporter.scrape()
        assert 'vmtop_target_info{agent="' in text
        assert f'pid="{proc.pid}"' in text and f'pid="{child}"' in text
        assert 'program="forker"' in text  # the child inherits the argv and the name
    finally:
        exporter.stop()
        proc.stdin.close()
        proc.wait(30)


def test_a_busy_port_is_one_line_and_exit_2() -> None:
    first = Exporter("--all")
    try:
        port = first.url.split(":")[2].split("/")[0]
        proc = vmtop_cmd("exporter", "--all", "--listen", f"127.0.0.1:{port}")
    finally:
        first.stop()
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"vmtop exporter: error: cannot listen on 127.0.0.1:{port}: ")


def test_sigterm_ends_the_exporter_cleanly(target: Target) -> None:
    exporter = Exporter(str(target.pid))
    exporter.scrape()
    exporter.proc.send_signal(signal.SIGTERM)
    assert exporter.proc.wait(30) == 0
