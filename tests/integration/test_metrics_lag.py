"""Consumer lag of /metrics on a real broker: the collector reads aiokafka's cached state (high
watermark, position) without a request, and that state is where agents/metrics.py expects it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.metrics import consumer_lags
from streams.topics import PRODUCT_EVENTS
from tests.integration.conftest import Stack
from tests.integration.helpers import Record, produce_async

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_intake_lag_is_highwater_minus_position(stack: Stack, topics: dict[str, str]) -> None:
    topic = topics[PRODUCT_EVENTS]

    async def run() -> list[list[tuple[str, str, int, int]]]:
        parts = await produce_async(
            stack.kafka_bootstrap, topic, [Record(b"k", b"%d" % i) for i in range(10)]
        )
        assert len(set(parts)) == 1  # one key: one partition
        tp = TopicPartition(topic, parts[0])
        consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            worker = SimpleNamespace(intake_consumer=consumer)
            seen = [consumer_lags(worker)]  # nothing fetched yet: unknown, so absent
            got = 0
            for _ in range(100):
                data = await consumer.getmany(tp, timeout_ms=500, max_records=3 - got)
                got += sum(len(v) for v in data.values())
                if got >= 3:
                    break
            assert got == 3
            seen.append(consumer_lags(worker))
            while got < 10:
                data = await consumer.getmany(tp, timeout_ms=500)
                got += sum(len(v) for v in data.values())
            seen.append(consumer_lags(worker))
            return seen
        finally:
            await consumer.stop()

    before, after3, after10 = asyncio.run(run())
    assert before == []
    assert [(s, t, n) for s, t, _, n in after3] == [("intake", topic, 7)]
    assert [(s, t, n) for s, t, _, n in after10] == [("intake", topic, 0)]
