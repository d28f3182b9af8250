"""agents/raw_fetch.py against aiokafka's own records, on the real broker: a consumer marked
`RAW` gets `(offset, timestamp, key, value)` tuples, or the compiled core's `RecordRun`s of them
(read from the fetch's bytes), equal to the fields of the ConsumerRecords an ordinary consumer
gets from the same partitions (keys and values None or not, compressed batches, a
transaction's records and its control batches, an aborted transaction), reads each record once
across several `getmany` calls (its positions advance as aiokafka's do), and the ordinary
consumer of the same process still gets ConsumerRecords. With small fetches (a few batches
each) the core reads the uncompressed ones and aiokafka those with a compressed batch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition

from agents import admin, raw_fetch
from streams.topics import TopicSpec
from tests.integration.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PARTITIONS = 3


async def _produce(bootstrap: str, topic: str) -> int:
    n = 0
    for compression in (None, "gzip"):
        p = AIOKafkaProducer(
            bootstrap_servers=bootstrap, compression_type=compression, linger_ms=20
        )
        await p.start()
        try:
            futs = []
            for i in range(600):
                key = None if i % 7 == 0 else f"k{i % 50}".encode()
                value = (
                    None
                    if i % 11 == 1 and key is not None
                    else f'{{"i": {i}, "c": "{compression}"}}'.encode()
                )
                futs.append(await p.send(topic, value, key=key, partition=i % PARTITIONS,
                                         timestamp_ms=1_700_000_000_000 + i))  # fmt: skip
                n += 1
            await asyncio.gather(*futs)
        finally:
            await p.stop()
    # a committed and an aborted transaction: control batches among the records
    tx = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-tx")
    await tx.start()
    try:
        for commit in (True, False):
            async with tx.transaction() if commit else _aborting(tx):
                for i in range(30):
                    await tx.send(topic, f"tx{commit}{i}".encode(), partition=i % PARTITIONS)
                    n += 1
    finally:
        await tx.stop()
    return n


class _aborting:
    def __init__(self, p: AIOKafkaProducer) -> None:
        self.p = p

    async def __aenter__(self) -> None:
        await self.p.begin_transaction()

    async def __aexit__(self, *exc: Any) -> None:
        await self.p.abort_transaction()


async def _read_all(
    bootstrap: str, topic: str, n: int, raw: bool, kinds: set[str], fetch_bytes: int = 1 << 20
) -> dict[int, list[Any]]:
    c = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        key_deserializer=raw_fetch.RAW if raw else None,
        max_partition_fetch_bytes=fetch_bytes,
    )
    await c.start()
    out: dict[int, list[Any]] = {p: [] for p in range(PARTITIONS)}
    try:
        got = 0
        while got < n:
            # small max_records: positions must advance correctly between calls
            data = await asyncio.wait_for(c.getmany(timeout_ms=500, max_records=37), 60)
            for tp, msgs in data.items():
                kinds.add(type(msgs[0]).__name__)
                recs = raw_fetch.tuples(msgs) if raw else msgs
                out[tp.partition].extend(recs)
                got += raw_fetch.count(msgs)
                # the position is past every record returned, also mid-batch
                last = raw_fetch.next_offset(msgs) - 1
                assert last == raw_fetch.as_raw(recs[-1])[0]
                assert await c.position(tp) >= last + 1, (raw, tp, last)
        assert not await c.getmany(timeout_ms=1000)  # nothing read twice, nothing more
        positions = {p: await c.position(TopicPartition(topic, p)) for p in range(PARTITIONS)}
        ends = await c.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        assert positions == {tp.partition: o for tp, o in ends.items()}
    finally:
        await c.stop()
    return out


def test_raw_tuples_are_aiokafkas_records(stack: Stack, topic_prefix: str) -> None:
    assert raw_fetch.install()
    topic = f"{topic_prefix}raw"
    boot = stack.kafka_bootstrap

    kinds: set[str] = set()
    small: set[str] = set()

    async def run() -> tuple[dict[int, list[Any]], ...]:
        await admin.ensure_topics(boot, [TopicSpec("raw", topic, PARTITIONS, 1)])
        n = await _produce(boot, topic)
        return (
            await _read_all(boot, topic, n, True, kinds),
            await _read_all(boot, topic, n, False, set()),
            await _read_all(boot, topic, n, True, small, fetch_bytes=2048),
        )

    raw, ordinary, raw_small = asyncio.run(run())
    assert sum(map(len, raw.values())) == 2 * 600 + 60
    if raw_fetch.RecordRun is not None:  # the compiled core (required in CI by the unit tests)
        assert small == {"RecordRun", "tuple"}, small
    for p in range(PARTITIONS):
        assert all(type(m) is ConsumerRecord for m in ordinary[p])
        assert all(type(m) is tuple for m in raw[p])
        assert raw[p] == [(m.offset, m.timestamp, m.key, m.value) for m in ordinary[p]]
        assert raw_small[p] == raw[p]
        assert [raw_fetch.as_raw(m) for m in ordinary[p]] == raw[p]
        offsets = [m[0] for m in raw[p]]
        assert offsets == sorted(set(offsets))
    flat = [m for p in raw for m in raw[p]]
    assert any(m[2] is None for m in flat) and any(m[3] is None for m in flat)
    assert any(m[3] == b"txFalse0" for m in flat)  # read_uncommitted: the aborted ones too
