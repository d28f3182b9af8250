"""Stage 1, intake: raw input topics -> `<app>-batches`, one micro-batch message per fetch.

An aiokafka consumer group `<app>-intake` reads `product-events` and `survey-answers` with
`getmany`, and writes each partition's records as micro-batch messages to the internal topic
`<app>-batches`, same partition number; it commits its offsets once the batches are
acknowledged. Faust then pays its per-event cost once per micro-batch, and each user partition
gets one durable arrival order (docs/architecture.md, "The intake").
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, IllegalStateError

from agents import raw_fetch

if TYPE_CHECKING:
    from agents.runtime import Runtime

log = logging.getLogger("engagement.worker")

# A fetch returns once INTAKE_MIN_BYTES came or `Settings.intake_linger_ms` passed.
INTAKE_MIN_BYTES = 1024 * 1024
# At most this much a fetch (all partitions), so a `getmany` round holds about as many records
# as MAX_RECORDS: a partition's fetch read by the core comes as one run (agents/raw_fetch.py),
# which `max_records` counts once.
INTAKE_MAX_BYTES = 4 * 1024 * 1024
MAX_RECORDS = 20_000
MAX_IN_FLIGHT = 4


class Intake:
    def __init__(self, worker: Runtime) -> None:
        self.w = worker
        self.consumer: AIOKafkaConsumer | None = None
        # set on shutdown: the intake finishes its current micro-batches and stops before
        # Faust stops the producer (a send after that crashed the app: exit 1 on SIGTERM)
        self.stop_requested = asyncio.Event()
        self.stopped = asyncio.Event()

    async def stop(self) -> None:
        self.stop_requested.set()
        if self.consumer is not None:
            try:
                await asyncio.wait_for(self.stopped.wait(), 30)
            except TimeoutError:
                log.warning("intake: still busy at shutdown; its records are read again")

    async def run(self) -> None:
        w = self.w
        s = w.s
        # records as (offset, timestamp, key, value) tuples (agents/raw_fetch.py), or aiokafka's
        # ConsumerRecords where its fetcher is not the one raw_fetch knows
        raw = raw_fetch.install()
        consumer = AIOKafkaConsumer(
            *w.input_names,
            key_deserializer=raw_fetch.RAW if raw else None,
            bootstrap_servers=s.bootstrap,
            group_id=w.names.intake_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=INTAKE_MAX_BYTES,
            # Micro-batches: each costs the users stage a fixed amount (an event, the meta and
            # marker writes of its epoch), so a live trickle must not become one micro-batch
            # per record. The broker holds a fetch until it has INTAKE_MIN_BYTES or
            # the linger (ENGAGEMENT_INTAKE_LINGER_MS) passed: at most that much added delay.
            fetch_min_bytes=INTAKE_MIN_BYTES,
            fetch_max_wait_ms=s.intake_linger_ms,
            **s.kafka_security.aiokafka_kwargs(),
        )
        await consumer.start()
        self.consumer = consumer
        send = w.app.producer.send
        batches = w.names.batches
        encode = w.encode_batches  # the core's, or streams.codec's
        # Pipelined: the next fetch is read and sent while the micro-batches of the earlier
        # ones are being acknowledged; their offsets are committed in fetch order, each once
        # its micro-batches are acknowledged (at most MAX_IN_FLIGHT fetches unacknowledged).
        commits: asyncio.Task[None] | None = None
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        try:
            while not self.stop_requested.is_set():
                data = await consumer.getmany(timeout_ms=200, max_records=MAX_RECORDS)
                if not data:
                    continue
                offsets = {}
                acks = []
                for tp, msgs in data.items():
                    base = w.input_names[tp.topic]
                    # tuples, or the runs the core read from the fetch's bytes (raw_fetch)
                    recs = msgs if raw else [raw_fetch.as_raw(m) for m in msgs]
                    for value in encode(base, tp.partition, recs):
                        acks.append(await send(batches, None, value, tp.partition, None, None))
                    offsets[tp] = raw_fetch.next_offset(recs)
                    w.stats["intake_records"] += raw_fetch.count(recs)
                await in_flight.acquire()
                if commits is not None and commits.done() and commits.exception() is not None:
                    raise commits.exception()  # type: ignore[misc]
                commits = asyncio.ensure_future(
                    self._commit_after(consumer, acks, offsets, commits, in_flight)
                )
            if commits is not None:
                await commits
        finally:
            await consumer.stop()
            self.stopped.set()

    async def _commit_after(
        self,
        consumer: AIOKafkaConsumer,
        acks: list[Any],
        offsets: dict[Any, int],
        prev: asyncio.Task[None] | None,
        in_flight: asyncio.Semaphore,
    ) -> None:
        try:
            await asyncio.gather(*acks)
            if prev is not None:
                await prev
            # A rebalance of the intake group may have taken partitions away meanwhile:
            # commit what is still ours; the new owner re-reads the rest (the users stage
            # ignores what it has already applied).
            mine = consumer.assignment()
            offsets = {tp: o for tp, o in offsets.items() if tp in mine}
            try:
                if offsets:
                    await consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                log.info("intake: commit skipped after a rebalance (%s)", exc)
        finally:
            in_flight.release()
