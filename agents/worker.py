"""The live worker: a Faust app whose agents run the engine (streams/) on micro-batches.

Stages (docs/architecture.md):
1. intake (an aiokafka consumer group `<app>-intake`): reads `product-events` and
   `survey-answers` with `getmany`, and writes each partition's records as one micro-batch
   message to the internal topic `<app>-batches`, same partition number; commits its offsets
   once the batches are acknowledged. Faust then pays its per-event cost once per micro-batch.
2. users (Faust agent on `<app>-batches`, table `users`): decode, validate, dead letters,
   forward records keyed by another user to the owner's partition, dedupe, engine; side outputs
   are published and acknowledged, then the partition meta, then every dirty user is written
   (one table write per touched user per micro-batch).
3. accounts (Faust agent on `<app>-account-facts`, table `accounts`): customer state.

In memory each worker keeps the entity states of the partitions it owns (loaded from the tables
when partitions are assigned); snapshots and /metrics read them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from types import MappingProxyType
from typing import Any

import faust
import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, IllegalStateError

from agents.forget import (
    FORGET_TOPIC,
    FORGOT_PREFIX,
    RECEIPT_SECONDS,
    Tombstones,
    drop_forgotten_facts,
    drop_forgotten_records,
    receipt_key,
    receipt_value,
    user_hash,
)
from agents.settings import Settings
from streams.engine import Partial, finalize, partial_from_json, partial_to_json
from streams.live import (
    Batch,
    LiveAccountPartition,
    LiveUserPartition,
    dumps,
    loads,
    missing,
    owner_of,
)
from streams.records import PRODUCT_EVENTS, SURVEY_ANSWERS
from streams.timeutil import Instant, format_instant, parse_as_of
from streams.topics import CHURN_SIGNALS, DEAD_LETTERS, TopicSpec

log = logging.getLogger("engagement.worker")

# Faust makes a stream wait, before each event, until its producer buffer holds at most
# `max_messages` (100) messages, flushing them one event-loop turn at a time (faust/transport/
# producer.py, "producer buffer full"); a micro-batch dirties hundreds of users, one changelog
# message each, so the stage stalled on every batch. Messages are still all sent and flushed
# before offsets commit; a larger bound only lets a batch's changelog writes go out together.
PRODUCER_BUFFER_MAX_MESSAGES = 20_000

# How long the intake lets records accumulate in a fetch (ms), unless INTAKE_MIN_BYTES came.
INTAKE_LINGER_MS = 200
INTAKE_MIN_BYTES = 1024 * 1024

META_PREFIX = b"\x00meta:"
APPLIED_PREFIX = b"\x00applied:"
DORMANT_CHECK_SECONDS = 30.0
MAX_BATCH_RECORDS = 2000
MAX_BATCH_BYTES = 4 * 1024 * 1024
INTERNAL_MAX_MESSAGE = 16 * 1024 * 1024


def encode_batch(batch: Batch) -> bytes:
    return msgspec.msgpack.encode((batch.topic, batch.partition, batch.records))


def decode_batch(data: bytes) -> Batch:
    topic, partition, records = msgspec.msgpack.decode(data)
    return Batch(topic, partition, [tuple(r) for r in records])


INTERNAL_CONFIGS = {
    "max.message.bytes": str(INTERNAL_MAX_MESSAGE),
    "retention.ms": str(7 * 86400_000),
}


def internal_topic_specs(s: Settings) -> tuple[TopicSpec, ...]:
    """The worker's internal topics (micro-batches, account facts) and its tables' changelogs
    (Faust's names), P partitions each: created before Faust starts, so two workers starting
    together never race to create them (Faust then sees no partitions and crashes an agent)."""
    rf = s.topics.replication_factor
    cfg = MappingProxyType(dict(INTERNAL_CONFIGS))
    compact = MappingProxyType({"cleanup.policy": "compact"})
    app = s.topic(s.app_id)
    return (
        *(
            TopicSpec(name, s.topic(f"{s.app_id}-{name}"), s.partitions, rf, cfg)
            for name in ("batches", "account-facts")
        ),
        *(
            TopicSpec(f"{t}-changelog", f"{app}-{t}-changelog", s.partitions, rf, compact)
            for t in ("users", "accounts")
        ),
    )


def _chunks(records: list[Any]) -> Iterable[list[Any]]:
    out: list[Any] = []
    size = 0
    for r in records:
        n = len(r[3] or b"") + len(r[2] or b"") + 32
        if out and (len(out) >= MAX_BATCH_RECORDS or size + n > MAX_BATCH_BYTES):
            yield out
            out, size = [], 0
        out.append(r)
        size += n
    if out:
        yield out


class Worker:
    """The Faust app and the in-memory state of the partitions this process owns."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        s = settings
        self.P = s.partitions
        self.app = faust.App(
            # the topic prefix isolates the consumer groups and table changelogs too
            s.topic(s.app_id),
            broker=f"kafka://{s.bootstrap}",
            store=s.store,
            datadir=s.data_dir,
            topic_partitions=self.P,
            topic_replication_factor=s.topics.replication_factor,
            key_serializer="raw",
            value_serializer="raw",
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=1.0,
            # A SIGKILLed member holds its partitions until its session expires: 10 s, not
            # Faust's 60 s (heartbeats come from Faust's consumer thread, never blocked by the
            # agents; docs/operations.md, "Faults we test").
            broker_session_timeout=10.0,
            broker_heartbeat_interval=1.0,
            table_standby_replicas=0,
            producer_max_request_size=INTERNAL_MAX_MESSAGE,
            producer_linger_ms=20,
            producer_max_batch_size=1024 * 1024,
            consumer_max_fetch_size=INTERNAL_MAX_MESSAGE,
            web_host=s.web_host,
            web_bind=s.web_host,
            web_port=s.web_port,
            web_in_thread=False,
            **s.kafka_security.faust_settings(),
        )
        from faust.transport.producer import ProducerBuffer

        ProducerBuffer.max_messages = PRODUCER_BUFFER_MAX_MESSAGES
        internal_cfg = dict(INTERNAL_CONFIGS)
        self.batches_topic = self.app.topic(
            s.topic(f"{s.app_id}-batches"),
            partitions=self.P,
            internal=True,
            config=internal_cfg,
            key_type=bytes,
            value_type=bytes,
        )
        self.facts_topic = self.app.topic(
            s.topic(f"{s.app_id}-account-facts"),
            partitions=self.P,
            internal=True,
            config=internal_cfg,
            key_type=bytes,
            value_type=bytes,
        )
        self.dead_letters = self.app.topic(s.topic(DEAD_LETTERS), key_type=bytes, value_type=bytes)
        self.churn_signals = self.app.topic(
            s.topic(CHURN_SIGNALS), key_type=bytes, value_type=bytes
        )
        self.users_table = self.app.Table(
            "users", partitions=self.P, key_type=bytes, value_type=bytes
        )
        self.accounts_table = self.app.Table(
            "accounts", partitions=self.P, key_type=bytes, value_type=bytes
        )
        self.user_parts: dict[int, LiveUserPartition] = {}
        self.acct_parts: dict[int, LiveAccountPartition] = {}
        self.input_names = {
            s.topic(PRODUCT_EVENTS): PRODUCT_EVENTS,
            s.topic(SURVEY_ANSWERS): SURVEY_ANSWERS,
        }
        self.stats = {
            "batches": 0, "records": 0, "intake_records": 0, "sweeps": 0, "started": time.time()
        }  # fmt: skip
        self.redis: Any = None
        # customers whose health must be re-published (agents/health.py drains it)
        self.health_pending: dict[int, set[str]] = {}
        self.intake_consumer: AIOKafkaConsumer | None = None
        # set on shutdown: the intake finishes its current micro-batches and stops before
        # Faust stops the producer (a send after that crashed the app: exit 1 on SIGTERM)
        self._intake_stop = asyncio.Event()
        self._intake_stopped = asyncio.Event()
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        # forgotten users and customers per partition (agents/forget.py), and the Redis work
        # (health entry removal, receipt) of forgets applied by the accounts agent
        self.user_tombs: dict[int, Tombstones] = {}
        self.acct_tombs: dict[int, Tombstones] = {}
        self.forget_redis: list[tuple[str, str, int]] = []
        self.health_pub: Any = None
        self._register()

    # ---- clock -----------------------------------------------------------------------------

    def now(self) -> Instant:
        return self.s.clock if self.s.clock is not None else time.time_ns()

    # ---- wiring ----------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        app.agent(self.batches_topic, name="users")(self._users_agent)
        app.agent(self.facts_topic, name="accounts")(self._accounts_agent)
        app.task(self._intake)
        app.timer(interval=1.0)(self._heartbeat)
        app.timer(interval=DORMANT_CHECK_SECONDS)(self._dormant)
        app.timer(interval=5.0)(self._check_gaps)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.on_rebalance_complete.connect(self._on_rebalance_complete)  # type: ignore[arg-type]
        app.on_before_shutdown.connect(self._on_before_shutdown)  # type: ignore[arg-type]
        from agents import views

        views.register(self)
        from agents import health

        self.health_pub = health.register(self)

    # ---- partition state -------------------------------------------------------------------

    def assigned(self) -> tuple[set[int], set[int]]:
        actives = self.app.assignor.assigned_actives()
        users = {tp.partition for tp in actives if tp.topic == self.batches_topic.get_topic_name()}
        accts = {tp.partition for tp in actives if tp.topic == self.facts_topic.get_topic_name()}
        return users, accts

    async def _on_revoked(self, sender: Any, *args: Any, **kw: Any) -> None:
        self.user_parts.clear()
        self.acct_parts.clear()

    async def _on_rebalance_complete(self, sender: Any, *args: Any, **kw: Any) -> None:
        users, accts = self.assigned()
        self._load(users, accts)

    def _load(self, users: set[int], accts: set[int]) -> None:
        cfg = self.s.config
        todo_u = users - set(self.user_parts)
        todo_a = accts - set(self.acct_parts)
        if todo_u:
            ents, metas, applied = self._read_table(self.users_table, todo_u, self.user_tombs)
            for p in todo_u:
                part = LiveUserPartition(cfg, p, self.P, self.P, users=ents[p], meta=metas.get(p))
                part.meta.event_offset = applied.get(p, -1)
                self.user_parts[p] = part
            n = sum(map(len, ents.values()))
            log.info("loaded user partitions %s (%d users)", sorted(todo_u), n)
        if todo_a:
            aents, ametas, aapplied = self._read_table(self.accounts_table, todo_a, self.acct_tombs)
            for p in todo_a:
                apart = LiveAccountPartition(cfg, p, accounts=aents[p], meta=ametas.get(p))
                apart.meta.event_offset = aapplied.get(p, -1)
                self.acct_parts[p] = apart
            log.info("loaded account partitions %s", sorted(todo_a))

    def _read_table(
        self, table: Any, parts: set[int], tombs: dict[int, Tombstones]
    ) -> tuple[dict[int, dict[str, Any]], dict[int, Any], dict[int, int]]:
        """Entities, meta and applied marker of the given partitions, from a table (and their
        tombstones into `tombs`)."""
        for p in parts:
            tombs.pop(p, None)
        ents: dict[int, dict[str, Any]] = {p: {} for p in parts}
        metas: dict[int, Any] = {}
        applied: dict[int, int] = {}
        for k, v in table.items():
            if k.startswith(META_PREFIX):
                p = int(k[len(META_PREFIX) :])
                if p in ents:
                    metas[p] = loads(v)
            elif k.startswith(APPLIED_PREFIX):
                p = int(k[len(APPLIED_PREFIX) :])
                if p in ents:
                    applied[p] = int(v)
            elif k.startswith(FORGOT_PREFIX):
                p = int(k[len(FORGOT_PREFIX) :])
                if p in ents:
                    tombs[p] = Tombstones.loads(v)
            else:
                key = k.decode("utf-8")
                p = owner_of(key, self.P)
                if p in ents:
                    ents[p][key] = loads(v)
        return ents, metas, applied

    def user_part(self, p: int) -> LiveUserPartition:
        part = self.user_parts.get(p)
        if part is None:
            self._load({p}, set())
            part = self.user_parts[p]
        return part

    def acct_part(self, p: int) -> LiveAccountPartition:
        part = self.acct_parts.get(p)
        if part is None:
            self._load(set(), {p})
            part = self.acct_parts[p]
        return part

    # ---- stage 1: intake -------------------------------------------------------------------

    async def _on_before_shutdown(self, sender: Any, *args: Any, **kw: Any) -> None:
        """Stop the intake while the producer still runs (Faust stops it next)."""
        self._intake_stop.set()
        if self.intake_consumer is not None:
            try:
                await asyncio.wait_for(self._intake_stopped.wait(), 30)
            except TimeoutError:
                log.warning("intake: still busy at shutdown; its records are read again")

    async def _intake(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.input_names,
            bootstrap_servers=self.s.bootstrap,
            group_id=self.s.topic(f"{self.s.app_id}-intake"),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            # Micro-batches: each costs the users stage a fixed amount (an event, the side
            # outputs' acknowledgement, meta and marker writes), so a live trickle must not
            # become one micro-batch per record. The broker holds a fetch until it has
            # INTAKE_MIN_BYTES or INTAKE_LINGER_MS passed: at most that much added delay.
            fetch_min_bytes=INTAKE_MIN_BYTES,
            fetch_max_wait_ms=INTAKE_LINGER_MS,
            **self.s.kafka_security.aiokafka_kwargs(),
        )
        await consumer.start()
        self.intake_consumer = consumer
        try:
            while not self._intake_stop.is_set():
                data = await consumer.getmany(timeout_ms=200, max_records=20000)
                if not data:
                    continue
                offsets = {}
                for tp, msgs in data.items():
                    base = self.input_names[tp.topic]
                    recs = [(m.offset, m.timestamp, m.key, m.value) for m in msgs]
                    for chunk in _chunks(recs):
                        await self.batches_topic.send(
                            partition=tp.partition,
                            value=encode_batch(Batch(base, tp.partition, chunk)),
                        )
                    offsets[tp] = msgs[-1].offset + 1
                    self.stats["intake_records"] += len(msgs)
                await self.app.producer.flush()
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
            await consumer.stop()
            self._intake_stopped.set()

    # ---- stage 2: users ----------------------------------------------------------------------

    async def _users_agent(self, stream: Any) -> None:
        async for event in stream.events():
            p = event.message.partition
            await self._users_message(p, event.message.offset, event.value)

    async def _users_message(self, p: int, offset: int, value: bytes) -> None:
        """Apply one micro-batch message, after any message Faust skipped before it."""
        async with self._lock(("users", p)):
            part = self.user_part(p)
            gap = missing(part.meta.event_offset, offset)
            if gap:
                log.warning("users %d: re-reading skipped micro-batches %s", p, gap)
                for off, val in await self._read_internal(self.batches_topic, p, gap):
                    await self._users_apply(p, part, off, val)
            # a redelivered message (offset <= the marker) is applied too: the rules of
            # streams/live.py make it change nothing that was durable
            await self._users_apply(p, part, offset, value)

    async def _users_apply(
        self, p: int, part: LiveUserPartition, offset: int, value: bytes
    ) -> None:
        batch = decode_batch(value)
        if batch.topic == FORGET_TOPIC:
            await self._forget_users(p, part, offset, batch)
            return
        tombs = self.user_tombs.get(p)
        if tombs:
            batch.records = drop_forgotten_records(
                tombs, batch.topic, batch.partition, batch.records
            )
        part.engine.fold_limit = self.now() - part.engine.margin
        part.wall = time.monotonic()  # which sources are idle (LiveUserPartition.sweep_fold)
        out = part.apply(batch, offset)  # expiry included: see streams/live.py _sweep_due
        acks: list[Any] = []  # this batch's side outputs: acknowledged before its state
        for q, fwd in out.forwards.items():
            for b in fwd:
                acks.append(await self.batches_topic.send(partition=q, value=encode_batch(b)))
        for q, facts in out.facts.items():
            acks.append(await self.facts_topic.send(partition=q, value=dumps(facts)))
        for reason, detail, topic, sp, off, key, rts, val in out.dead_letters:
            headers = [
                ("reason", reason.encode()),
                ("detail", detail.encode("utf-8", "replace")),
                ("source-topic", self.s.topic(topic).encode()),
                ("source-partition", str(sp).encode()),
                ("source-offset", str(off).encode()),
            ]
            acks.append(
                await self.dead_letters.send(
                    key=key, value=val, timestamp=rts / 1000, headers=headers
                )
            )
        for sig, customer, inst, topic, sp, off in out.signals:
            body = {
                "signal": sig,
                "customer": customer,
                "instant": format_instant(inst),
                "source": {"topic": self.s.topic(topic), "partition": sp, "offset": off},
            }
            acks.append(
                await self.churn_signals.send(
                    key=customer.encode(), value=json.dumps(body).encode()
                )
            )
        if acks:  # only these: not the whole producer (changelogs, other partitions)
            await asyncio.gather(*acks)
        # the meta (counters) first, then the users, then the applied marker (streams/live.py)
        table = self.users_table
        table[META_PREFIX + str(p).encode()] = dumps(part.meta)
        users = part.users
        for uid in out.dirty:
            table[uid.encode("utf-8")] = dumps(users[uid])
        for uid in out.deleted:  # removed by a sweep: nothing left of them
            key = uid.encode("utf-8")
            if key in table:
                del table[key]
        if out.swept:
            self.stats["sweeps"] += 1
            log.info("users %d: swept (%d users left, %d removed)", p, len(users), len(out.deleted))
        if offset > part.meta.event_offset:
            part.meta.event_offset = offset
            table[APPLIED_PREFIX + str(p).encode()] = str(offset).encode()
        self.stats["batches"] += 1
        self.stats["records"] += len(batch.records)

    async def _forget_users(
        self, p: int, part: LiveUserPartition, offset: int, batch: Batch
    ) -> None:
        """Apply a forget control message (agents/forget.py): delete each user's state, keep a
        tombstone of what it had counted, and pass the request on to the customer's partition."""
        table = self.users_table
        tombs = self.user_tombs.setdefault(p, Tombstones())
        for _off, _rts, key, val in batch.records:
            if not key:
                continue
            uid = key.decode("utf-8", "surrogatepass")
            u = part.users.pop(uid, None)
            offs = dict(part.meta.offs)
            for tp, o in ((u.offs or {}) if u is not None else {}).items():
                offs[tp] = max(o, offs.get(tp, -1))
            tombs.add(user_hash(uid), offs)
            q = owner_of(uid, self.P)
            msg = (FORGET_TOPIC, uid, (val or b"").decode())
            await self.facts_topic.send(partition=q, value=dumps(msg))
            log.info("users %d: forgot a user (%s state)", p, "its" if u is not None else "no")
        await self.app.producer.flush()
        table[FORGOT_PREFIX + str(p).encode()] = tombs.dumps()
        for _off, _rts, key, _val in batch.records:
            if key and key in table:
                del table[key]
        if offset > part.meta.event_offset:
            part.meta.event_offset = offset
            table[APPLIED_PREFIX + str(p).encode()] = str(offset).encode()

    # ---- stage 3: accounts -----------------------------------------------------------------

    async def _accounts_agent(self, stream: Any) -> None:
        async for event in stream.events():
            p = event.message.partition
            await self._accounts_message(p, event.message.offset, event.value)

    async def _accounts_message(self, p: int, offset: int, value: bytes) -> None:
        async with self._lock(("accounts", p)):
            part = self.acct_part(p)
            gap = missing(part.meta.event_offset, offset)
            if gap:
                log.warning("accounts %d: re-reading skipped messages %s", p, gap)
                for off, val in await self._read_internal(self.facts_topic, p, gap):
                    self._accounts_apply(p, part, off, val)
            self._accounts_apply(p, part, offset, value)
        if self.forget_redis:
            await self._forget_in_redis()

    async def _forget_in_redis(self) -> None:
        """Remove forgotten customers' health entries from Redis and write the receipts the
        `engagement forget` command waits for; on a Redis error they stay pending (retried with
        the next message) and processing goes on."""
        from agents.health import health_keys

        zkey, hkey = health_keys(self.s.topics.prefix, self.s.app_id)
        try:
            r = await self.get_redis()
            lock = self.health_pub._lock if self.health_pub is not None else asyncio.Lock()
            async with lock:  # a health chunk computed before the delete is written first
                while self.forget_redis:
                    customer, request_id, p = self.forget_redis[0]
                    pipe = r.pipeline(transaction=True)
                    pipe.zrem(zkey, customer)
                    pipe.hdel(hkey, customer)
                    if request_id:
                        key = receipt_key(self.s.topics.prefix, self.s.app_id, request_id)
                        pipe.set(key, receipt_value(p), ex=RECEIPT_SECONDS)
                    await pipe.execute()
                    self.forget_redis.pop(0)
        except Exception as exc:
            log.warning("forget: cannot update Redis (%s); retrying with the next message", exc)

    def _accounts_apply(
        self, p: int, part: LiveAccountPartition, offset: int, value: bytes
    ) -> None:
        part.engine.fold_limit = self.now() - part.engine.margin
        facts = loads(value)
        table = self.accounts_table
        tombs = self.acct_tombs.get(p)
        if isinstance(facts, tuple) and facts and facts[0] == FORGET_TOPIC:
            _, customer, request_id = facts
            a = part.accounts.pop(customer, None)
            tombs = self.acct_tombs.setdefault(p, Tombstones())
            tombs.add(user_hash(customer), dict(a.offs or {}) if a is not None else {})
            table[FORGOT_PREFIX + str(p).encode()] = tombs.dumps()
            if customer.encode("utf-8", "surrogatepass") in table:
                del table[customer.encode("utf-8", "surrogatepass")]
            self.forget_redis.append((customer, request_id, p))
            facts = []
        elif tombs:
            facts = drop_forgotten_facts(tombs, facts)
        dirty = part.apply(facts, offset)  # expiry included (customers are never removed)
        table[META_PREFIX + str(p).encode()] = dumps(part.meta)
        accounts = part.accounts
        for c in dirty:
            table[c.encode("utf-8")] = dumps(accounts[c])
        if offset > part.meta.event_offset:
            part.meta.event_offset = offset
            table[APPLIED_PREFIX + str(p).encode()] = str(offset).encode()
        if dirty:
            self.health_pending.setdefault(p, set()).update(dirty)

    # ---- skipped messages ------------------------------------------------------------------

    def _lock(self, key: tuple[str, int]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _read_internal(self, topic: Any, p: int, offsets: range) -> list[tuple[int, bytes]]:
        """Messages `offsets` of partition p of an internal topic, read directly from Kafka."""
        from aiokafka import TopicPartition

        tp = TopicPartition(topic.get_topic_name(), p)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.s.bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=INTERNAL_MAX_MESSAGE,
            fetch_max_bytes=INTERNAL_MAX_MESSAGE,
            **self.s.kafka_security.aiokafka_kwargs(),
        )
        await consumer.start()
        out: list[tuple[int, bytes]] = []
        try:
            consumer.assign([tp])
            consumer.seek(tp, offsets.start)
            deadline = time.monotonic() + 60
            while (not out or out[-1][0] < offsets.stop - 1) and time.monotonic() < deadline:
                data = await consumer.getmany(tp, timeout_ms=1000)
                for m in data.get(tp, []):
                    if m.offset in offsets and m.value is not None:
                        out.append((m.offset, m.value))
                    if m.offset >= offsets.stop - 1:
                        break
        finally:
            await consumer.stop()
        if not out or out[-1][0] < offsets.stop - 1:
            raise RuntimeError(f"could not re-read {tp} offsets {offsets} (the worker restarts)")
        return out

    async def _check_gaps(self) -> None:
        """Messages Faust committed past without delivering, with nothing after them: send the
        partition an empty message, whose arrival makes its agent re-read the gap (a table may
        only be written from inside the agent's stream)."""
        committed = getattr(self.app.consumer, "_committed_offset", {})
        stages: list[tuple[Any, dict[int, Any], bytes]] = [
            (self.batches_topic, self.user_parts, encode_batch(Batch("", 0, []))),
            (self.facts_topic, self.acct_parts, dumps([])),
        ]
        for topic, parts, nudge in stages:
            name = topic.get_topic_name()
            for p, part in list(parts.items()):
                for tp, off in list(committed.items()):
                    if tp.topic == name and tp.partition == p and off is not None:
                        last = off - 1  # the committed offset is the next one to read
                        if last > part.meta.event_offset:
                            log.warning(
                                "%s %d: committed past %d unapplied; nudging", name, p, last
                            )
                            await topic.send(partition=p, value=nudge)

    # ---- gathering ---------------------------------------------------------------------------

    async def _dormant(self) -> None:
        """Publish the dormant signals whose instant the worker's clock has passed."""
        now = self.now()
        for p, part in list(self.user_parts.items()):
            signals = part.dormant_signals(now)
            for sig, customer, inst, _topic, _sp, _off in signals:
                body = {"signal": sig, "customer": customer, "instant": format_instant(inst),
                        "source": None, "user_partition": p}  # fmt: skip
                await self.churn_signals.send(
                    key=customer.encode(), value=json.dumps(body).encode()
                )
            await asyncio.sleep(0)

    async def _heartbeat(self) -> None:
        """Register this worker (its URL) in Redis so any worker can gather a snapshot."""
        try:
            r = await self.get_redis()
            await r.set(self.registry_key(self.s.worker_id), self.s.web_url, ex=5)
        except Exception as exc:  # Redis away: /snapshot answers 503 until it is back
            log.warning("cannot register in Redis: %s", exc)
        if self.forget_redis:  # forgets whose Redis part failed: retried every second
            await self._forget_in_redis()

    def registry_key(self, worker_id: str) -> str:
        return f"{self.s.topics.prefix}{self.s.app_id}:worker:{worker_id}"

    async def get_redis(self) -> Any:
        if self.redis is None:
            import redis.asyncio as aioredis

            self.redis = aioredis.from_url(
                self.s.redis_url,
                socket_timeout=2,
                socket_connect_timeout=2,
                **self.s.redis_security.client_kwargs(self.s.redis_url),
            )
        return self.redis

    def local_partials(self, t: Instant) -> dict[str, Any]:
        """This worker's contribution at T: a merged partial and what it covers.

        Only partitions whose state is loaded count: a partition still recovering after a
        rebalance is left out (the gathering worker then answers 503 naming it), and it is never
        loaded from here, since its table may be half-restored."""
        assigned_u, assigned_a = self.assigned()
        users = assigned_u & set(self.user_parts)
        accts = assigned_a & set(self.acct_parts)
        total = Partial()
        coverage: dict[str, int] = {}
        folds: list[Instant] = []
        for p in sorted(users):
            part = self.user_parts[p]
            total.merge(part.engine.partial(t))
            folds.append(part.engine.fold)
            for (topic, sp), off in part.meta.offs.items():
                key = f"{self.s.topic(topic)}/{sp}"
                coverage[key] = max(coverage.get(key, -1), off)
        facts = self.s.topic(f"{self.s.app_id}-account-facts")
        for p in sorted(accts):
            part_a = self.acct_parts[p]
            total.merge(part_a.engine.partial(t))
            folds.append(part_a.engine.fold)
            # the last account-facts message applied: `engagement snapshot --wait` compares it
            # with the topic's end (facts are acknowledged before the records that made them)
            coverage[f"{facts}/{p}"] = part_a.meta.event_offset
        return {
            "worker": self.s.worker_id,
            "user_partitions": sorted(users),
            "account_partitions": sorted(accts),
            "fold": max(folds, default=None) if folds else None,
            "coverage": coverage,
            "partial": partial_to_json(total),
        }

    async def gather(self, t: Instant) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of /snapshot at T: every partition's partial, from every worker."""
        import aiohttp

        try:
            r = await self.get_redis()
            keys = [k async for k in r.scan_iter(match=self.registry_key("*"))]
            urls = sorted({(await r.get(k) or b"").decode() for k in keys} - {""})
        except Exception as exc:
            return 503, {
                "error": f"Redis is unavailable ({type(exc).__name__}); the snapshot needs "
                "the worker registry there. Retry when Redis is back."
            }
        parts: list[dict[str, Any]] = []
        errors: list[str] = []
        as_of = format_instant(t)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

            async def fetch(url: str) -> None:
                if url == self.s.web_url:
                    parts.append(self.local_partials(t))
                    return
                try:
                    async with session.get(f"{url}/partials", params={"as_of": as_of}) as resp:
                        if resp.status == 200:
                            parts.append(await resp.json())
                        else:
                            errors.append(f"{url}: HTTP {resp.status}")
                except Exception as exc:
                    errors.append(f"{url}: {type(exc).__name__}")

            await asyncio.gather(*(fetch(u) for u in urls))
        total = Partial()
        seen_u: dict[int, int] = {}
        seen_a: dict[int, int] = {}
        coverage: dict[str, int] = {}
        fold: Instant | None = None
        for body in parts:
            for p in body["user_partitions"]:
                seen_u[p] = seen_u.get(p, 0) + 1
            for p in body["account_partitions"]:
                seen_a[p] = seen_a.get(p, 0) + 1
            total.merge(partial_from_json(body["partial"]))
            for k, v in body["coverage"].items():
                coverage[k] = max(coverage.get(k, -1), v)
            f = body.get("fold")
            if f is not None and (fold is None or f > fold):
                fold = f
        missing_u = [p for p in range(self.P) if seen_u.get(p) != 1]
        missing_a = [p for p in range(self.P) if seen_a.get(p) != 1]
        if missing_u or missing_a:
            return 503, {
                "error": "not every partition answered exactly once (a rebalance or a worker down?); retry",
                "missing_user_partitions": missing_u,
                "missing_account_partitions": missing_a,
                "workers": urls,
                "worker_errors": errors,
            }
        if fold is not None and t < fold:
            return 422, {
                "error": f"as_of {as_of} is older than the state still holds; the oldest "
                f"instant answerable now is {format_instant(fold)}",
            }
        snap = finalize(total, t, self.s.config)
        snap["coverage"] = coverage
        return 200, snap

    def parse_as_of(self, raw: str | None) -> Instant:
        return self.now() if not raw else parse_as_of(raw)

    # ---- health and metrics ------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        try:
            users, accts = self.assigned()
        except Exception:
            users, accts = set(), set()
        loaded = users <= set(self.user_parts) and accts <= set(self.acct_parts)
        return {
            "live": True,
            "ready": bool(loaded and (users or accts)),
            "worker": self.s.worker_id,
            "user_partitions": sorted(users),
            "account_partitions": sorted(accts),
            "records_processed": self.stats["records"],
            "clock": format_instant(self.now()),
        }

    def metrics_text(self) -> tuple[bytes, str]:
        from agents.metrics import exposition

        return exposition(self.registry)

    @property
    def registry(self) -> Any:
        reg = getattr(self, "_registry", None)
        if reg is None:
            from prometheus_client import CollectorRegistry

            from agents.metrics import EngagementCollector

            reg = CollectorRegistry()
            reg.register(EngagementCollector(self))
            self._registry = reg
        return reg
