"""A sample of the fuzz generator's hostile records (tests/hostile.py) through real workers on
the local stack: nothing crashes, /snapshot equals the replay of the same records, and the
dead-letters topic holds every rejected record once per reason, as the generator built them."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agents import admin
from streams.config import Config
from streams.partitioner import kafka_partition
from streams.replay import replay_lines
from streams.timeutil import format_instant
from tests.hostile import ACCEPTED, DUPLICATE, OUTCOMES, Hostile, Record
from tests.integration.conftest import Stack
from tests.integration.live_harness import WorkerProc, wait_for_snapshot, wait_ready

pytestmark = pytest.mark.integration

PARTITIONS = 8
RECORDS = int(os.environ.get("FUZZ_LIVE_RECORDS", "3000"))


async def _produce(bootstrap: str, prefix: str, records: list[Record]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=2 * 1024 * 1024
    )
    await producer.start()
    try:
        for r in records:
            key = None if r.key is None else r.key.encode("utf-8")
            part = kafka_partition(key, PARTITIONS) if key is not None else 0
            await producer.send(
                prefix + r.topic, value=r.value, key=key, timestamp_ms=r.rts, partition=part
            )
        await producer.flush()
    finally:
        await producer.stop()


async def _dead_letters(bootstrap: str, topic: str, want: int, timeout: float) -> Counter[str]:
    """Reasons of the dead letters, one per source record (the topic is at-least-once)."""
    from aiokafka import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen: dict[tuple[str, str, str], str] = {}
    try:
        client = await admin.connect(bootstrap)
        try:
            parts = range((await admin.partition_counts(client, [topic]))[topic])
        finally:
            await client.close()
        consumer.assign([TopicPartition(topic, p) for p in parts])
        deadline = asyncio.get_running_loop().time() + timeout
        while len(seen) < want and asyncio.get_running_loop().time() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                for m in msgs:
                    h = {k: v.decode() for k, v in m.headers}
                    src = (h["source-topic"], h["source-partition"], h["source-offset"])
                    seen[src] = h["reason"]
    finally:
        await consumer.stop()
    return Counter(seen.values())


def test_hostile_sample_through_live_workers(
    stack: Stack, topics: dict[str, str], topic_prefix: str, redis_db: int, tmp_path: Path
) -> None:
    gen = Hostile(seed=7, users=300, live=True)
    records = list(gen.records(RECORDS))
    as_of = format_instant((gen.rts + 60_000) * 1_000_000)
    # the same records as a replay file (a value that is not UTF-8 is a payload with lone
    # surrogates there, docs/metrics.md §4)
    data = tmp_path / "sample.jsonl"
    with open(data, "wb") as fh:
        for r in records:
            payload = None if r.value is None else r.value.decode("utf-8", "surrogateescape")
            env = {"topic": r.topic, "ts": r.rts, "key": r.key, "payload": payload}
            fh.write(json.dumps(env).encode() + b"\n")
    with open(data, "rb") as fh:
        expected = replay_lines(fh, Config(), as_of)
    want = {k: gen.expected.get(k, 0) for k in OUTCOMES}
    got = {
        ACCEPTED: expected["accepted"],
        DUPLICATE: expected["duplicates"],
        **expected["rejected"],
    }
    assert got == want  # the replay itself agrees with the generator

    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP=stack.kafka_bootstrap,
        REDIS_URL=f"redis://{stack.redis_host}:{stack.redis_port}/{redis_db}",
        ENGAGEMENT_TOPIC_PREFIX=topic_prefix,
        ENGAGEMENT_INPUT_PARTITIONS=str(PARTITIONS),
        ENGAGEMENT_APP_ID=topic_prefix.strip(".").replace(".", "-") + "-app",
        ENGAGEMENT_CLOCK=as_of,
        ENGAGEMENT_DATA_DIR=str(tmp_path / "w1"),
    )
    w = WorkerProc("w1", env, tmp_path / "w1.log").start()
    try:
        wait_ready([w])
        asyncio.run(_produce(stack.kafka_bootstrap, topic_prefix, records))
        live = wait_for_snapshot([w], as_of, RECORDS, timeout=240)
        assert w.proc is not None and w.proc.poll() is None, "the worker crashed"
        assert live.pop("coverage")
        diffs = {k: (live.get(k), v) for k, v in expected.items() if live.get(k) != v}
        assert not diffs, json.dumps(diffs, indent=1, default=str)[:3000]
        rejected = {k: v for k, v in want.items() if k not in (ACCEPTED, DUPLICATE) and v}
        dead = asyncio.run(
            _dead_letters(stack.kafka_bootstrap, topics["dead-letters"], sum(rejected.values()), 60)
        )
        assert dict(dead) == rejected
        assert "Traceback" not in w.log.read_text(errors="replace")
    finally:
        w.stop()
