"""Kafka on the local stack: the project's topics as declared, and a produce/consume round trip
with historical and future event times, through aiokafka."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from agents import admin
from streams.topics import (
    BASE_CONFIGS,
    CHURN_SIGNALS,
    DEAD_LETTERS,
    PRODUCT_EVENTS,
    SURVEY_ANSWERS,
    TopicSettings,
    topic_specs,
)
from tests.integration.conftest import REPO, Stack
from tests.integration.helpers import Record, consume_until, produce

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CREATE_TIME = 0  # aiokafka's timestamp_type for CreateTime


async def _topic_configs(bootstrap: str, names: list[str]) -> dict[str, dict[str, str]]:
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await client.start()
    try:
        responses = await client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
    finally:
        await client.close()
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        obj: dict[str, Any] = response.to_object()
        for resource in obj["resources"]:
            assert resource["error_code"] == 0, resource
            configs[resource["resource_name"]] = {
                e["config_names"]: e["config_value"] for e in resource["config_entries"]
            }
    return configs


def test_topics_are_created_with_their_declared_partitions_and_configs(
    stack: Stack, topics: dict[str, str]
) -> None:
    assert set(topics) == {PRODUCT_EVENTS, SURVEY_ANSWERS, DEAD_LETTERS, CHURN_SIGNALS}
    specs = topic_specs(TopicSettings(prefix=topics[PRODUCT_EVENTS][: -len(PRODUCT_EVENTS)]))
    again = asyncio.run(admin.ensure_topics(stack.kafka_bootstrap, specs))
    assert [s.state for s in again] == ["exists"] * 4
    assert [s.actual_partitions for s in again] == [8, 8, 4, 4]

    configs = asyncio.run(_topic_configs(stack.kafka_bootstrap, list(topics.values())))
    for name in topics.values():
        for key, value in BASE_CONFIGS.items():
            assert configs[name][key] == value, (name, key)


def test_a_different_partition_count_is_reported_not_changed(
    stack: Stack, topics: dict[str, str]
) -> None:
    prefix = topics[PRODUCT_EVENTS][: -len(PRODUCT_EVENTS)]
    specs = topic_specs(TopicSettings(prefix=prefix, input_partitions=3))
    statuses = asyncio.run(admin.ensure_topics(stack.kafka_bootstrap, specs))
    differ = {s.spec.base_name: s for s in statuses if s.state == "partitions-differ"}
    assert set(differ) == {PRODUCT_EVENTS, SURVEY_ANSWERS}
    assert differ[PRODUCT_EVENTS].actual_partitions == 8
    assert "has 8 partitions, declared 3" in differ[PRODUCT_EVENTS].describe()


def test_the_topics_command_creates_then_checks(stack: Stack, topic_prefix: str) -> None:
    def topics_cmd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "engagement_cli",
                "topics",
                "--bootstrap",
                stack.kafka_bootstrap,
                *args,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    missing = topics_cmd("--check", "--prefix", topic_prefix)
    assert missing.returncode == 1, missing
    assert missing.stdout.count("MISSING") == 4

    created = topics_cmd("--prefix", topic_prefix)
    assert created.returncode == 0, created
    assert created.stdout.count("created") == 4

    checked = topics_cmd("--check", "--prefix", topic_prefix)
    assert checked.returncode == 0, checked
    assert checked.stdout.count("exists") == 4

    unreachable = topics_cmd("--check", "--bootstrap", "127.0.0.1:1", "--timeout", "1")
    assert unreachable.returncode == 1
    assert "cannot reach Kafka" in unreachable.stderr


def test_records_round_trip_with_historical_and_future_event_times(
    stack: Stack, topics: dict[str, str], consumer_group: str
) -> None:
    topic = topics[PRODUCT_EVENTS]
    now = datetime.now(tz=UTC)
    times = [
        datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC),  # long before any retention
        now - timedelta(days=400),
        now,
        now + timedelta(days=2),  # Kafka 4 refuses > 1 h ahead unless configured
    ]
    records = [
        Record(
            key=f"user-{i % 25}".encode(),
            value=f'{{"n": {i}}}'.encode(),
            timestamp_ms=int(times[i % len(times)].timestamp() * 1000),
        )
        for i in range(200)
    ]
    partitions = produce(stack.kafka_bootstrap, topic, records)

    by_key: dict[bytes | None, set[int]] = defaultdict(set)
    for record, partition in zip(records, partitions, strict=True):
        by_key[record.key].add(partition)
    assert all(len(p) == 1 for p in by_key.values()), "a key must always map to one partition"
    assert len(set(partitions)) > 1, "25 keys should spread over several partitions"

    started = time.monotonic()
    received = consume_until(
        stack.kafka_bootstrap,
        topic,
        lambda got: len(got) >= len(records),
        group_id=consumer_group,
        timeout=60,
    )
    assert len(received) == len(records), (
        f"got {len(received)} in {time.monotonic() - started:.0f}s"
    )
    sent = {(r.key, r.value): r.timestamp_ms for r in records}
    for got in received:
        assert sent[(got.key, got.value)] == got.timestamp_ms
        assert got.timestamp_type == CREATE_TIME
        assert got.partition in by_key[got.key]
