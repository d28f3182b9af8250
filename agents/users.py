"""Stage 2, users: a Faust agent on `<app>-batches` that runs the engine on each micro-batch.

Per message: decode, validate, dead letters, forward records keyed by another user to the
owner's partition, dedupe, engine (streams/live.py `LiveUserPartition.apply`). The side outputs
are sent at once; the state changes join the partition's open epoch, persisted by the epoch
protocol (agents/epoch.py) after those side outputs are acknowledged. The next micro-batch is
applied without waiting for that: durability is off the latency path, never skipped.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from agents.coverage import recent_forwards
from agents.epoch import EpochCommitter, Stored, attach_ids, id_writes
from agents.forget import (
    FORGET_TOPIC,
    Tombstones,
    drop_forgotten_records,
    user_hash,
)
from streams.codec import (
    decode_batch,
    decode_meta,
    decode_user,
    encode_batch,
    encode_facts,
    encode_forget,
    encode_meta,
    encode_stored_user,
    id_key,
    input_batch_heads,
)
from streams.config import Config
from streams.live import Applied, Batch, LiveUserPartition, Output, missing, owner_of
from streams.records import INPUT_TOPICS, PRODUCT_EVENTS
from streams.timeutil import Instant, format_instant

if TYPE_CHECKING:
    from agents.runtime import Runtime

log = logging.getLogger("engagement.worker")

FORWARD_WARN_SECONDS = 300.0
# how a micro-batch of an input topic's records begins: those the compiled core reads itself
INPUT_BATCH_HEADS = input_batch_heads(INPUT_TOPICS)


def kept_ts(batch: Batch, out: Output) -> list[int]:
    """The record timestamps (ms) of the records of `batch` that were not forwarded."""
    if not out.forwards:
        return [r[1] for r in batch.records]
    gone = {r[0] for bs in out.forwards.values() for b in bs for r in b.records}
    return [r[1] for r in batch.records if r[0] not in gone]


def load_user_partition(
    config: Config,
    p: int,
    partitions: int,
    stored: Stored,
    fold_limit: Instant | None,
    cls: Any = LiveUserPartition,
) -> tuple[LiveUserPartition, Tombstones | None]:
    """A user partition as its table holds it, and its tombstones; `cls` is the partition
    class of the engine (streams/native_live.py `partition_classes`). The compiled core reads
    the stored bytes itself (`from_encoded`) when it can be sure to read them as
    `decode_user` does; otherwise they are decoded here. The users' event ids, stored under
    keys of their own, go back into them (agents/epoch.py `attach_ids`); the deletions of
    those that stay out are the partition's first id writes."""
    meta = decode_meta(stored.meta) if stored.meta is not None else None
    from_encoded = getattr(cls, "from_encoded", None)
    part = None
    if from_encoded is not None:
        part = from_encoded(
            config, p, partitions, partitions, stored.entities, meta, fold_limit, stored.ids
        )
    if part is None:
        if stored.meta is not None:  # the attempt may have set fields of it: start again
            meta = decode_meta(stored.meta)
        users = {uid: decode_user(v) for uid, v in stored.entities.items()}
        gone = attach_ids(users, stored.ids, lambda sp: (PRODUCT_EVENTS, sp))
        part = cls(
            config,
            p,
            partitions,
            partitions,
            users=users,
            meta=meta,
            fold_limit=fold_limit,
        )
        part.log_id_changes(gone)
    part.meta.event_offset = stored.applied
    tombs = Tombstones.loads(stored.tombstones) if stored.tombstones is not None else None
    return part, tombs


class UsersStage:
    def __init__(self, worker: Runtime, epochs: EpochCommitter) -> None:
        self.w = worker
        self.epochs = epochs
        self.tombs_dirty: set[int] = set()
        self.window = [0, 0]  # [forwarded, read from the input] since the last look
        self.warned = -FORWARD_WARN_SECONDS

    async def agent(self, stream: Any) -> None:
        # events are acknowledged by the epoch that persists their effects (agents/epoch.py)
        async for event in stream.noack().events():
            await self.message(event.message.partition, event.message.offset, event.value, event)

    async def message(self, p: int, offset: int, value: bytes, event: Any) -> None:
        """Apply one micro-batch message, after any message Faust skipped before it."""
        w = self.w
        async with w.lock(("users", p)):
            part = w.user_part(p)
            gap = missing(part.meta.event_offset, offset)
            if gap:
                log.warning("users %d: re-reading skipped micro-batches %s", p, gap)
                for off, val in await w.read_internal(w.names.batches, p, gap):
                    await self.apply(p, part, off, val)
            # a redelivered message (offset <= the marker) is applied too: the rules of
            # streams/live.py make it change nothing that was durable
            await self.apply(p, part, offset, value)
            if event is not None:
                self.epochs.epoch(p).events.append(event)
            if self.epochs.due(p):
                self.close(p)

    def close(self, p: int) -> None:
        part = self.w.user_parts.get(p)
        if part is None:
            return
        tombs = self.w.user_tombs.get(p) if p in self.tombs_dirty else None
        self.tombs_dirty.discard(p)
        self.epochs.close(
            p,
            part.users,
            encode_stored_user,
            encode_meta(part.meta),
            tombs.dumps() if tombs is not None else None,
        )

    async def apply(self, p: int, part: LiveUserPartition, offset: int, value: bytes) -> None:
        w = self.w
        tombs = w.user_tombs.get(p)
        got = None
        if not tombs and value.startswith(INPUT_BATCH_HEADS):
            # an input topic's records: the compiled core reads the message itself
            part.engine.fold_limit = w.now() - part.engine.margin
            part.wall = time.monotonic()  # which sources are idle (LiveUserPartition.sweep_fold)
            got = part.apply_encoded(value, offset)
        batch = decode_batch(value) if got is None else None
        ep = self.epochs.epoch(p)
        ep.touched = True
        fresh = offset > part.meta.event_offset  # not a redelivered micro-batch
        if fresh:
            part.meta.event_offset = offset
        ep.marker = part.meta.event_offset
        if batch is not None:
            if batch.topic == FORGET_TOPIC:
                await self.forget(p, part, batch)
                return
            if tombs:
                batch.records = drop_forgotten_records(
                    tombs, batch.topic, batch.partition, batch.records
                )
            part.engine.fold_limit = w.now() - part.engine.margin
            part.wall = time.monotonic()
            out = part.apply(batch, offset)  # expiry included: see streams/live.py _sweep_due
            got = Applied(
                batch.topic, batch.partition, len(batch.records), kept_ts(batch, out), out
            )
        assert got is not None
        out = got.out
        self.note_applied(p, got, fresh)
        send = w.app.producer.send
        side = ep.side
        names = w.names
        for q, fwd in out.forwards.items():
            for b in fwd:
                side.append(await send(names.batches, None, encode_batch(b), q, None, None))
        for q, facts in out.facts.items():
            side.append(await send(names.account_facts, None, encode_facts(facts), q, None, None))
        for q, message in out.facts_encoded.items():
            side.append(await send(names.account_facts, None, message, q, None, None))
        for reason, detail, topic, sp, off, key, rts, val in out.dead_letters:
            headers = [
                ("reason", reason.encode()),
                ("detail", detail.encode("utf-8", "replace")),
                ("source-topic", w.s.topic(topic).encode()),
                ("source-partition", str(sp).encode()),
                ("source-offset", str(off).encode()),
            ]
            side.append(await send(names.dead_letters, key, val, None, rts / 1000, headers))
        for sig, customer, inst, topic, sp, off in out.signals:
            body = {
                "signal": sig,
                "customer": customer,
                "instant": format_instant(inst),
                "source": {"topic": w.s.topic(topic), "partition": sp, "offset": off},
            }
            side.append(
                await send(
                    names.churn_signals,
                    customer.encode(),
                    json.dumps(body).encode(),
                    None,
                    None,
                    None,
                )
            )
        ep.ids += id_writes(part)
        ep.keys |= out.dirty
        ep.keys |= out.deleted
        if out.forwards:
            self.note_forwarded(sum(len(b.records) for bs in out.forwards.values() for b in bs))
        if out.swept:
            w.stats["sweeps"] += 1
            log.info(
                "users %d: swept (%d users left, %d removed)", p, len(part.users), len(out.deleted)
            )
        w.stats["batches"] += 1
        w.stats["records"] += got.records
        if got.partition == p:  # read by the intake from the input partition p (not a forward)
            self.window[1] += got.records

    def note_applied(self, p: int, got: Applied, fresh: bool) -> None:
        """Note the forwards' offsets (agents/coverage.py); count the delays of the records a
        micro-batch seen for the first time applied here (agents/delays.py): all of them but
        those forwarded to the partition owning their user, counted there."""
        if got.out.forwards:
            log = recent_forwards(self.w, p)
            for q, bs in got.out.forwards.items():
                log.note(got.topic, q, [r[0] for b in bs for r in b.records])
        if fresh:
            self.w.delays.observe(int(time.time() * 1000), got.kept_ts)

    def note_forwarded(self, n: int) -> None:
        """Count forwarded records; say so, at most every 5 minutes, when most records of the
        input arrive in a partition that does not own their user (a producer that does not
        partition by Kafka's default murmur2 of the user id: each such record is read twice)."""
        self.w.stats["forwarded"] = self.w.stats.get("forwarded", 0) + n
        self.window[0] += n
        forwarded, read = self.window
        now = time.monotonic()
        if read >= 10_000:
            if forwarded > read / 2 and now - self.warned > FORWARD_WARN_SECONDS:
                log.warning(
                    "%d%% of the last %d input records were keyed to a partition that does not "
                    "own their user and were forwarded (read twice). Producers must partition "
                    "by Kafka's default (murmur2 of the user id as key); librdkafka clients "
                    "(confluent-kafka, kcat, ...) need partitioner=murmur2_random "
                    "(docs/producers.md)",
                    100 * forwarded // read, read,
                )  # fmt: skip
                self.warned = now
            self.window = [0, 0]

    async def forget(self, p: int, part: LiveUserPartition, batch: Batch) -> None:
        """Apply a forget control message (agents/forget.py): delete each user's state, keep a
        tombstone of what it had counted, and pass the request on to the customer's partition."""
        w = self.w
        ep = self.epochs.epoch(p)
        ep.ids += id_writes(part)
        tombs = w.user_tombs.setdefault(p, Tombstones())
        for _off, _rts, key, val in batch.records:
            if not key:
                continue
            uid = key.decode("utf-8", "surrogatepass")
            u = part.users.pop(uid, None)
            if u is not None and u.ids:  # its event ids go before it (agents/epoch.py)
                ep.ids += [(id_key(uid, eid), None) for eid in u.ids]
            offs = dict(part.meta.offs)
            for tp, o in ((u.offs or {}) if u is not None else {}).items():
                offs[tp] = max(o, offs.get(tp, -1))
            tombs.add(user_hash(uid), offs)
            self.tombs_dirty.add(p)
            ep.keys.add(uid)
            q = owner_of(uid, w.P)
            msg = encode_forget(uid, (val or b"").decode())
            ep.side.append(
                await w.app.producer.send(w.names.account_facts, None, msg, q, None, None)
            )
            log.info("users %d: forgot a user (%s state)", p, "its" if u is not None else "no")
