"""`engagement simulate` producing to Kafka: the same records as `--out` (keys, values, record
timestamps, Kafka's default partition of each key), live pacing, and a clean stop on a signal."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents import admin
from streams.simulate import MAX_VALUE_BYTES, kafka_partition, value_bytes
from streams.topics import ENV_PREFIX, PRODUCT_EVENTS, SURVEY_ANSWERS
from tests.integration.conftest import REPO, Stack
from tests.integration.helpers import Received, consume_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CREATE_TIME = 0  # aiokafka's timestamp_type for CreateTime
INPUTS = (PRODUCT_EVENTS, SURVEY_ANSWERS)
# A fixed stream: lots of bad records, so too_large values and null keys are in the first 2,000.
OPTIONS = (
    "--start", "2026-11-20T08:00:00Z", "--duration", "1h", "--rate", "5", "--users", "200",
    "--seed", "7", "--bad-fraction", "0.1", "--max-records", "2000",
)  # fmt: skip


def _engagement(*args: str) -> list[str]:
    return [sys.executable, "-m", "engagement_cli", *args]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_PREFIX, "KAFKA_BOOTSTRAP")}
    env.update(extra)
    return env


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _engagement(*args),
        cwd=REPO,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


async def _read_all_async(bootstrap: str, topics: list[str]) -> list[Received]:
    """Every record of `topics`, up to their end offsets, in offset order per partition."""
    client = await admin.connect(bootstrap)
    try:
        counts = await admin.partition_counts(client, topics)
    finally:
        await client.close()
    assert set(counts) == set(topics), counts
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(counts[t])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        received: list[Received] = []
        deadline = time.monotonic() + 60
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "could not read the topics to their end"
            batches = await consumer.getmany(timeout_ms=500)
            for tp, messages in batches.items():
                received.extend(
                    Received(
                        tp.topic,
                        tp.partition,
                        m.offset,
                        m.key,
                        m.value if m.value is not None else b"",
                        m.timestamp,
                        m.timestamp_type,
                    )
                    for m in messages
                    if m.offset < ends[tp]
                )
        return received
    finally:
        await consumer.stop()


def _read_all(bootstrap: str, topics: list[str]) -> list[Received]:
    return asyncio.run(_read_all_async(bootstrap, topics))


def _partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    async def counts() -> dict[str, int]:
        client = await admin.connect(bootstrap)
        try:
            return await admin.partition_counts(client, topics)
        finally:
            await client.close()

    return asyncio.run(counts())


def test_produces_the_records_the_file_holds(
    stack: Stack, topics: dict[str, str], topic_prefix: str, tmp_path: Path
) -> None:
    out = tmp_path / "events.jsonl"
    written = _run("simulate", *OPTIONS, "--progress", "none", "--out", str(out))
    assert written.returncode == 0, written.stderr
    lines = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert len(lines) == 2000

    produced = _run(
        "simulate", *OPTIONS, "--progress", "lines",
        "--bootstrap", stack.kafka_bootstrap, "--prefix", topic_prefix,
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    assert f"2,000 records to Kafka at {stack.kafka_bootstrap}" in produced.stderr

    names = [topics[t] for t in INPUTS]
    parts = _partition_counts(stack.kafka_bootstrap, names)
    received = _read_all(stack.kafka_bootstrap, names)
    assert len(received) == len(lines)

    def as_record(line: dict[str, Any]) -> tuple[str, bytes | None, bytes, int]:
        key = line["key"]
        return (
            topic_prefix + line["topic"],
            None if key is None else key.encode(),
            value_bytes(line["payload"]),
            line["ts"],
        )

    expected = [as_record(line) for line in lines]
    # The stream exercises the edge cases: records without a key, values over the size limit.
    assert any(key is None for _, key, _, _ in expected)
    assert any(len(value) > MAX_VALUE_BYTES for _, _, value, _ in expected)
    got = [(r.topic, r.key, r.value, r.timestamp_ms) for r in received]
    assert Counter(got) == Counter(expected)
    assert all(r.timestamp_type == CREATE_TIME for r in received)

    # Each keyed record sits in Kafka's default partition of its key, in the file's order.
    by_partition: dict[tuple[str, int], list[tuple[bytes, bytes, int]]] = defaultdict(list)
    for topic, key, value, ts in expected:
        if key is not None:
            by_partition[(topic, kafka_partition(key, parts[topic]))].append((key, value, ts))
    in_kafka: dict[tuple[str, int], list[tuple[bytes, bytes, int]]] = defaultdict(list)
    for r in sorted(received, key=lambda r: (r.topic, r.partition, r.offset)):
        if r.key is not None:
            assert r.partition == kafka_partition(r.key, parts[r.topic]), r
            in_kafka[(r.topic, r.partition)].append((r.key, r.value, r.timestamp_ms))
    assert in_kafka == by_partition


def test_live_pacing_sends_records_when_their_time_comes(
    stack: Stack, topics: dict[str, str], topic_prefix: str
) -> None:
    # --kafka and the prefix from the environment; --start defaults to now with --live.
    env = _env(KAFKA_BOOTSTRAP=stack.kafka_bootstrap, **{ENV_PREFIX: topic_prefix})
    before_ms = int(time.time() * 1000)
    t0 = time.monotonic()
    result = _run(
        "simulate", "--kafka", "--live", "--duration", "3s", "--rate", "100", "--progress", "none",
        env=env,
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    after_ms = int(time.time() * 1000)
    assert result.returncode == 0, result.stderr
    assert 2.0 <= elapsed <= 15.0, elapsed
    received = _read_all(stack.kafka_bootstrap, [topics[t] for t in INPUTS])
    assert len(received) == 300
    stamps = sorted(r.timestamp_ms for r in received)
    assert before_ms <= stamps[0] and stamps[-1] <= after_ms
    assert 2900 <= stamps[-1] - stamps[0] <= 3000  # 3 s of record time at 100 records/s


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_flushes_then_exits(
    stack: Stack, topics: dict[str, str], topic_prefix: str, sig: signal.Signals, code: int
) -> None:
    proc = subprocess.Popen(
        _engagement(
            "simulate", "--bootstrap", stack.kafka_bootstrap, "--prefix", topic_prefix,
            "--live", "--duration", "1h", "--rate", "50", "--progress", "none",
        ),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        first = consume_until(
            stack.kafka_bootstrap, topics[PRODUCT_EVENTS], lambda got: len(got) > 0, timeout=60
        )
        assert first, "the live generator sent nothing"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert "stopped early by SIG" in err
    match = re.search(r"simulate: ([0-9,]+) records to Kafka", err)
    assert match, err
    sent = int(match.group(1).replace(",", ""))
    received = _read_all(stack.kafka_bootstrap, [topics[t] for t in INPUTS])
    assert len(received) == sent > 0
