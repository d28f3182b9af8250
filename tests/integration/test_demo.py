"""`make run`'s demo shows every KPI (issue 15, point 10): its backfill path (deploy/local/run.sh:
`engagement simulate` over the default 40 days, replayed as of now), at a small user count, gives
every row of `engagement top` a value; the same records loaded into Kafka give a live worker
whose `engagement top --once` has a value in every row, records/s included while the demo's live
generator runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engagement_cli import client
from engagement_cli.cmd_top import Sample, parse_metrics, render
from tests.integration.conftest import Stack
from tests.integration.live_harness import REPO, run_cli, wait_for_snapshot, wait_ready
from tests.integration.ops_helpers import env_for, worker

pytestmark = pytest.mark.integration

RUN_SH = REPO / "deploy" / "local" / "run.sh"
# a value missing from a frame: a lone "-" (not inside a date, a name or a number)
MISSING = re.compile(r"(?<![\w.:/-])-(?![\w.:/-])")
ROWS = ("ACTIVITY", "SURVEYS", "ONBOARDING", "RETENTION", "CHURN", "CUSTOMERS", "RECORDS")


def missing_values(frame: str) -> list[str]:
    """The lines of a `top` frame that show "-" for a value."""
    return [ln for ln in frame.splitlines() if MISSING.search(ln)]


def test_missing_values_sees_a_dash() -> None:
    assert missing_values("RETENTION   D1 70.0%   D7 -   D30 17.1%") != []
    assert missing_values("as of 2026-12-05T17:06:39Z\nCHURN  nps_detractor 9") == []


def wait_processing(url: str, timeout: float = 90) -> None:
    """Until the worker's processed counter moves (the generator's first records arrived)."""
    first = parse_metrics(client.metrics_text(url, timeout=10))[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1)
        if parse_metrics(client.metrics_text(url, timeout=10))[0] != first:
            return
    raise AssertionError(f"the worker processed nothing of the live generator in {timeout}s")


def run_demo(stack: Stack, demo_dir: Path) -> dict[str, object]:
    """deploy/local/run.sh's demo part (RUN_WORKER=0) with its defaults but the user count and
    rate (40 days of history), on the running stack; the snapshot it printed."""
    env = dict(os.environ)
    env.update(
        ENGAGEMENT_RUN_DIR=str(stack.log_dir.parent),  # the running stack, not a new one
        DEMO_DIR=str(demo_dir), DEMO_USERS="100", DEMO_RATE="0.02", RUN_WORKER="0",
    )  # fmt: skip
    for k in ("DEMO_DURATION", "DEMO_SEED", "ENGAGEMENT_TOPIC_PREFIX", "ENGAGEMENT_CONFIG"):
        env.pop(k, None)
    r = subprocess.run(
        ["bash", str(RUN_SH)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert r.returncode == 0, f"{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    snap = json.loads((demo_dir / "snapshot.json").read_text())
    assert isinstance(snap, dict)
    return snap


def test_the_demo_fills_every_row_of_top(
    stack: Stack, topic_prefix: str, redis_db: int, tmp_path: Path
) -> None:
    demo = tmp_path / "demo"
    snap = run_demo(stack, demo)
    # the replay of the demo's records, as `top` would show it
    frame = render("replay", 1.0, Sample(at=0.0, snapshot=snap), None, None, color=False)
    body = frame.split("\nWORKER", 1)[0]
    assert all(row in body for row in ROWS), frame
    assert missing_values(body) == [], frame

    # the same records, live: a worker on this test's topics, then the live generator
    env = env_for(stack, topic_prefix, redis_db)
    env.pop("ENGAGEMENT_CLOCK")  # the demo's history ends now
    assert run_cli("topics", env=env).returncode == 0
    w = worker("demo", env, tmp_path)
    gen: subprocess.Popen[bytes] | None = None
    try:
        w.start()
        wait_ready([w])
        lines = (demo / "events.jsonl").read_bytes().count(b"\n")
        loaded = run_cli("load", str(demo / "events.jsonl"), env=env, timeout=600)
        assert loaded.returncode == 0, loaded.stderr[-2000:]
        wait_for_snapshot([w], str(snap["as_of"]), lines, timeout=400)
        with open(tmp_path / "gen.log", "wb") as log:  # the child keeps its own copy
            gen = subprocess.Popen(
                [sys.executable, "-m", "engagement_cli", "simulate", "--kafka", "--live", "--rate",
                 "20", "--duration", "10m", "--users", "100", "--seed", "2", "--progress", "none"],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        wait_processing(w.url)
        top = run_cli("top", "--once", "--interval", "2", "--url", w.url, env=env, timeout=60)
        frame = top.stdout.decode()
        assert top.returncode == 0, frame + top.stderr.decode()
        assert all(row in frame for row in (*ROWS, "WORKER")), frame
        assert missing_values(frame) == [], frame
        print(frame)
        rate = re.search(r"records/s ([0-9.,]+)", frame)
        assert rate and float(rate.group(1).replace(",", "")) > 0, frame
    finally:
        if gen is not None:
            gen.send_signal(signal.SIGTERM)
            gen.wait(30)
        w.stop()
