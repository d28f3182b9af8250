"""Prometheus and Alertmanager: the repo's configs pass promtool/amtool, and the local stack's
servers run them (the worker is scraped, Alertmanager runs without a cluster port)."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
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
