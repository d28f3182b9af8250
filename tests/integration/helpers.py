"""Small Kafka helpers of the integration tests (aiokafka, run with asyncio.run)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents import admin
from streams.topics import BASE_CONFIGS, TopicSpec


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Received:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int
    timestamp_type: int


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    """Create one plain topic (configs as the project's topics)."""
    spec = TopicSpec(name, name, partitions, 1, BASE_CONFIGS)
    statuses = asyncio.run(admin.ensure_topics(bootstrap, [spec]))
    assert statuses[0].ok, statuses[0].describe()


async def produce_async(bootstrap: str, topic: str, records: Iterable[Record]) -> list[int]:
    """Send records (acks=all) and return the partition each one landed in."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, r.value, key=r.key, timestamp_ms=r.timestamp_ms)
            for r in records
        ]
        metadata = await asyncio.gather(*futures)
        return [m.partition for m in metadata]
    finally:
        await producer.stop()


def produce(bootstrap: str, topic: str, records: Iterable[Record]) -> list[int]:
    return asyncio.run(produce_async(bootstrap, topic, records))


async def consume_until_async(
    bootstrap: str,
    topic: str,
    done: Callable[[Sequence[Received]], bool],
    *,
    group_id: str | None = None,
    timeout: float = 60.0,
) -> list[Received]:
    """Read `topic` from the earliest offset until `done(records so far)` or `timeout`.

    With a group the consumer subscribes and commits (as a service would); without one it is
    assigned every partition and commits nothing.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=group_id is not None,
    )
    await consumer.start()
    received: list[Received] = []
    try:
        if group_id is None:
            client = await admin.connect(bootstrap)
            try:
                counts = await admin.partition_counts(client, [topic])
            finally:
                await client.close()
            assert topic in counts, f"topic {topic} does not exist"
            consumer.assign([TopicPartition(topic, p) for p in range(counts[topic])])
        else:
            consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while not done(received) and time.monotonic() < deadline:
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
                )
        return received
    finally:
        await consumer.stop()


def consume_until(
    bootstrap: str,
    topic: str,
    done: Callable[[Sequence[Received]], bool],
    *,
    group_id: str | None = None,
    timeout: float = 60.0,
) -> list[Received]:
    return asyncio.run(
        consume_until_async(bootstrap, topic, done, group_id=group_id, timeout=timeout)
    )
