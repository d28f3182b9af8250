"""Faust (faust-streaming) on the local broker: an agent counts per key into a RocksDB table,
and a second worker with an empty data directory recovers the table from its changelog.

The records after the restart are produced once the second worker is ready: faust-streaming
0.15.3 can skip the first record of a partition's backlog when a worker starts (it resumes
fetching before it seeks to the committed offsets; see docs/stack.md, "Known issues"), which
would make this test flaky without testing anything of ours.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from agents import admin
from tests.integration.conftest import REPO, Stack
from tests.integration.helpers import Received, Record, consume_until, create_topic, produce

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PARTITIONS = 8
KEYS = [f"user-{i}".encode() for i in range(12)]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def faust_worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `faust worker` of tests/integration/faust_counter_app.py, stopped with SIGTERM."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "faust",
                "-A",
                "tests.integration.faust_counter_app",
                "worker",
                "--without-web",
                "-l",
                "info",
            ],
            cwd=REPO,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"the Faust worker ignored SIGTERM for 60s:\n{_tail(log)}")


def _latest_counts(received: Sequence[Received]) -> dict[bytes, int]:
    latest: dict[bytes, tuple[int, int]] = {}  # key -> (offset, count); one partition per key
    for r in received:
        assert r.key is not None
        if r.key not in latest or r.offset > latest[r.key][0]:
            latest[r.key] = (r.offset, int(r.value))
    return {k: c for k, (_, c) in latest.items()}


def _wait_for_counts(
    stack: Stack, sink: str, expected: int, proc: subprocess.Popen[bytes], log: Path
) -> dict[bytes, int]:
    def done(received: Sequence[Received]) -> bool:
        if proc.poll() is not None:
            return True
        counts = _latest_counts(received)
        return len(counts) == len(KEYS) and all(c >= expected for c in counts.values())

    started = time.monotonic()
    received = consume_until(stack.kafka_bootstrap, sink, done, timeout=120)
    assert proc.poll() is None, f"the Faust worker exited ({proc.returncode}):\n{_tail(log)}"
    counts = _latest_counts(received)
    assert counts == dict.fromkeys(KEYS, expected), (
        f"after {time.monotonic() - started:.0f}s the table counts are {counts}, "
        f"expected {expected} per key:\n{_tail(log)}"
    )
    return counts


def _wait_until_ready(proc: subprocess.Popen[bytes], log: Path, offset: int) -> None:
    """Wait for the worker's "Ready" (after recovery and the seek to committed offsets)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with log.open("rb") as f:
            f.seek(offset)
            if b"[^Worker]: Ready" in f.read():
                return
        assert proc.poll() is None, f"the Faust worker exited ({proc.returncode}):\n{_tail(log)}"
        time.sleep(0.2)
    pytest.fail(f"the Faust worker was not ready after 120s:\n{_tail(log)}")


def test_table_state_survives_a_restart_through_the_changelog(
    stack: Stack, topic_prefix: str, tmp_path: Path
) -> None:
    source, sink = f"{topic_prefix}source", f"{topic_prefix}sink"
    app_id = f"{topic_prefix}counter"
    create_topic(stack.kafka_bootstrap, source, PARTITIONS)
    create_topic(stack.kafka_bootstrap, sink, 1)
    env = {
        "KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "COUNTER_APP_ID": app_id,
        "COUNTER_SOURCE": source,
        "COUNTER_SINK": sink,
        "COUNTER_PARTITIONS": str(PARTITIONS),
    }
    log = tmp_path / "faust-worker.log"

    # First worker: three records per key.
    produce(stack.kafka_bootstrap, source, [Record(k, b"a") for k in KEYS for _ in range(3)])
    with faust_worker({**env, "COUNTER_DATADIR": str(tmp_path / "data-1")}, log) as proc:
        _wait_for_counts(stack, sink, 3, proc, log)
    assert proc.returncode is not None

    changelog = f"{app_id}-counts-changelog"
    assert changelog in asyncio.run(admin.list_topics(stack.kafka_bootstrap))

    # Second worker, empty data directory: the table must come back from the changelog, and
    # the committed offsets must keep the first records from being counted twice.
    log_size = log.stat().st_size
    with faust_worker({**env, "COUNTER_DATADIR": str(tmp_path / "data-2")}, log) as proc:
        _wait_until_ready(proc, log, log_size)
        produce(stack.kafka_bootstrap, source, [Record(k, b"b") for k in KEYS])
        _wait_for_counts(stack, sink, 4, proc, log)
