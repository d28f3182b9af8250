"""Prometheus and Alertmanager: the repo's configs pass promtool/amtool, and the local stack's
servers run them (the worker is scraped, every worker listed by deploy/local/worker-targets.sh
is discovered through file_sd, Alertmanager runs without a cluster port)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.integration.conftest import REPO, Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: deploy/local/install-packages.sh installs it"
    return path


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.mark.usefixtures("stack")  # the stack's scripts install promtool
def test_promtool_accepts_the_prometheus_config() -> None:
    result = subprocess.run(
        [_tool("promtool"), "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.usefixtures("stack")  # the stack's scripts install amtool
def test_amtool_accepts_the_alertmanager_config() -> None:
    result = subprocess.run(
        [_tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_prometheus_scrapes_the_worker_and_itself(stack: Stack) -> None:
    targets = _get_json(f"{stack.prometheus_url}/api/v1/targets")["data"]["activeTargets"]
    jobs = {t["labels"]["job"]: t["scrapeUrl"] for t in targets}
    assert set(jobs) == {"engagement-worker", "prometheus"}
    assert jobs["engagement-worker"].endswith("/metrics")
    assert "127.0.0.1:" in jobs["engagement-worker"]
    alertmanagers = _get_json(f"{stack.prometheus_url}/api/v1/alertmanagers")["data"]
    assert [a["url"] for a in alertmanagers["activeAlertmanagers"]] == [
        stack.alertmanager_url + "/api/v2/alerts"
    ]


def test_alertmanager_runs_without_a_cluster(stack: Stack) -> None:
    status = _get_json(f"{stack.alertmanager_url}/api/v2/status")
    assert status["cluster"]["status"] == "disabled"
    assert "receiver" in status["config"]["original"]


WORKER_TARGETS = REPO / "deploy" / "local" / "worker-targets.sh"


def _worker_targets(*args: str) -> str:
    result = subprocess.run(
        ["bash", str(WORKER_TARGETS), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env=os.environ.copy(),  # the stack's ports and run directory, as the stack fixture's
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


class _MetricsServer:
    """A stand-in worker on 127.0.0.1:<free port>: GET /metrics serves engagement_worker_info
    and the process collectors of agents/metrics.py, as a worker does."""

    def __init__(self, name: str) -> None:
        from prometheus_client import CollectorRegistry, Info

        from agents.metrics import add_process_collectors, exposition

        reg = add_process_collectors(CollectorRegistry())
        Info("engagement_worker", "stand-in", registry=reg).info({"worker": name})
        body, content_type = exposition(reg)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", content_type)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def two_workers() -> Iterator[list[_MetricsServer]]:
    servers = [_MetricsServer("a"), _MetricsServer("b")]
    try:
        yield servers
    finally:
        for s in servers:
            _worker_targets("remove", s.address)
            s.close()


def _worker_targets_up(stack: Stack) -> dict[str, str]:
    targets = _get_json(f"{stack.prometheus_url}/api/v1/targets?state=active")["data"]
    return {
        t["labels"]["instance"]: t["health"]
        for t in targets["activeTargets"]
        if t["labels"]["job"] == "engagement-worker"
    }


@pytest.mark.timeout(150)
def test_prometheus_discovers_every_listed_worker(
    stack: Stack, two_workers: list[_MetricsServer]
) -> None:
    """Issue 15.3: two workers added with deploy/local/worker-targets.sh are discovered by the
    stack's Prometheus (file_sd), scraped under job engagement-worker with their memory and CPU;
    a removed one is dropped."""
    a, b = two_workers
    for s in two_workers:
        _worker_targets("add", s.address)
    listed = _worker_targets("list").split()
    assert a.address in listed and b.address in listed
    deadline = time.monotonic() + 90
    while True:
        health = _worker_targets_up(stack)
        if health.get(a.address) == health.get(b.address) == "up":
            break
        assert time.monotonic() < deadline, f"not both scraped: {health}"
        time.sleep(2)
    query = urllib.parse.quote('process_resident_memory_bytes{job="engagement-worker"}')
    result = _get_json(f"{stack.prometheus_url}/api/v1/query?query={query}")["data"]["result"]
    memory = {r["metric"]["instance"]: float(r["value"][1]) for r in result}
    assert memory.get(a.address, 0) > 0 and memory.get(b.address, 0) > 0, memory

    _worker_targets("remove", b.address)
    assert b.address not in _worker_targets("list").split()
    deadline = time.monotonic() + 60
    while b.address in _worker_targets_up(stack):
        assert time.monotonic() < deadline, "the removed worker is still a target"
        time.sleep(2)
    assert _worker_targets_up(stack).get(a.address) == "up"
