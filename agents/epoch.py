"""The persistence protocol of the live worker: state is written per *epoch*, not per message.

A stage (users, accounts) applies the messages of a partition to the state it holds in memory
as they arrive. The changes of one commit interval (`Settings.commit_interval_ms`, 200 ms by
default) form an epoch: each entity changed in it is written once, however often it changed.
When an epoch closes, its writes are serialized at once (the state in memory moves on), and
its commit runs in the background, epochs of a partition strictly in order, in these steps:

1. the epoch's side outputs (dead letters, forwards, account facts, churn signals) are
   acknowledged by Kafka;
2. the partition meta (counters, the last source offsets counted, sweep decisions), then the
   tombstones of forgotten entities, then the event ids added and dropped (users only, one key
   each, in the order they changed), then each changed entity, then the deletions, then the
   applied marker (the last message of the epoch) are sent to the table's changelog partition,
   in that order, and acknowledged;
3. the same writes go to the local store (RocksDB) as one WriteBatch, with Faust's
   persisted-offset key set to the changelog offset of the marker (a restart reads the
   changelog from there, the way Faust's own recovery does);
4. only then are the epoch's input messages acknowledged to Faust, which commits their offsets.

Faust refuses table writes outside an event's context, and an epoch may be closed by a timer:
so the writes go through the producer (explicit partitions) and the store directly.

Why a crash anywhere is exact: Kafka keeps a changelog partition in send order, so what
survives a crash is a prefix of step 2's writes (and of step 3, which a restart completes from
the changelog). The input offsets were not committed, so the epoch's messages are redelivered.
The meta comes first, so a redelivered record is never counted twice; an entity is written with
the source offsets it has applied, so a record applied to a surviving entity changes nothing,
and one whose entity write was lost is applied again to the state it was applied to the first
time (streams/live.py). An event id is stored with the record that brought it and precedes its
user: loading keeps an id only when its user has applied that record (`attach_ids`), so an id
whose user's write was lost is added again by the redelivered record, never found first; a
dropped id whose deletion was lost is dropped again by the redelivered sweep or forget. Side
outputs precede every state write that records them, so none is lost (their consumers dedupe on
the source offset). tests/unit/test_epoch.py crashes between every two steps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

try:
    from engagement_native import write_record_batches
except ImportError:  # no compiled core: aiokafka's builder
    write_record_batches = None

from streams.codec import ENTITY_PREFIX, ID_PREFIX, decode_id, decode_id_key, encode_id_changes
from streams.live import IdChange

log = logging.getLogger("engagement.epoch")

# Keys of the tables: the reserved keys of a partition start with a NUL, an entity's key is its
# id after streams.codec.ENTITY_PREFIX (ids may hold any character, a leading NUL included).
META_PREFIX = b"\x00meta:"
APPLIED_PREFIX = b"\x00applied:"
FORGOT_PREFIX = b"\x00forgot:"


def meta_key(partition: int) -> bytes:
    return META_PREFIX + str(partition).encode()


def applied_key(partition: int) -> bytes:
    return APPLIED_PREFIX + str(partition).encode()


def forgot_key(partition: int) -> bytes:
    return FORGOT_PREFIX + str(partition).encode()


def entity_key(entity_id: str) -> bytes:
    return ENTITY_PREFIX + entity_id.encode("utf-8", "surrogatepass")


@dataclass
class Stored:
    """What a partition's table holds (encoded): its entities, meta, marker and tombstones."""

    entities: dict[str, bytes] = field(default_factory=dict)
    ids: list[tuple[bytes, bytes]] = field(default_factory=list)  # users' event ids (id_key)
    meta: bytes | None = None
    applied: int = -1  # the last message whose epoch is durable (-1: none)
    tombstones: bytes | None = None


def read_partition(items: Iterable[tuple[bytes, bytes]], partition: int) -> Stored:
    """A partition's stored state, from the (key, value) items of its table (other
    partitions' reserved keys, and keys that are not ours, such as Faust's offset key, are
    passed over; the caller gives only this partition's entities)."""
    out = Stored()
    mk, ak, fk = meta_key(partition), applied_key(partition), forgot_key(partition)
    entities, ids = out.entities, out.ids
    # run once per stored item at a restart (millions of them), so the key tests are inline
    for k, v in items:
        head = k[:1]
        if head == ENTITY_PREFIX:  # the id, as `entity_key` encoded it
            entities[k[1:].decode("utf-8", "surrogatepass")] = v
        elif head == ID_PREFIX:
            ids.append((k, v))
        elif k == mk:
            out.meta = v
        elif k == ak:
            out.applied = int(v)
        elif k == fk:
            out.tombstones = v
    return out


# One write of an epoch: (key, value), value None for a deletion.
Write = tuple[bytes, "bytes | None"]


def entity_writes(
    entities: Any, keys: Iterable[str], encode: Callable[[Any], bytes]
) -> list[Write]:
    """An epoch's writes of the entities `keys` of a stage partition (its users or customers):
    (entity_key, encode(state)) of those that still exist, in the order of their ids, then
    (entity_key, None), a deletion, of those that are gone, in the same order. The compiled
    core's partitions write them in one call."""
    native = getattr(entities, "entity_writes", None)
    if native is not None:
        return cast(list[Write], native(keys, fill=encode))
    writes: list[Write] = []
    deletions: list[Write] = []
    for eid in sorted(keys):
        e = entities.get(eid)
        if e is None:
            deletions.append((entity_key(eid), None))
        else:
            writes.append((entity_key(eid), encode(e)))
    return writes + deletions


def id_writes(part: Any) -> list[Write]:
    """The writes of the event ids a user partition added and dropped since the last call
    (`take_id_changes`, streams/live.py), in order; the compiled core's partitions write them
    in one call (`take_id_writes`)."""
    take = getattr(part, "take_id_writes", None)
    if take is not None:
        return take()
    return encode_id_changes(part.take_id_changes())


def attach_ids(
    users: Any, items: Iterable[tuple[bytes, bytes]], source: Callable[[int], Any]
) -> list[IdChange]:
    """Put stored event ids (`Stored.ids`) back into their users ({user: UserState}); the
    deletions (user, id, None) of those that stay out. An id stays out when its user is gone or has not applied
    the record that brought it (`source(partition)` is the key of that partition's product
    events in a user's `offs`): its user's write was lost in a crash, and the redelivered
    record adds it again, or it was dropped and its deletion was lost."""
    gone: list[IdChange] = []
    for k, v in items:
        uid, eid = decode_id_key(k)
        ts, part, off = decode_id(v)
        u = users.get(uid)
        offs = u.offs if u is not None else None
        if offs is None or offs.get(source(part), -1) < off:
            gone.append((uid, eid, None))
            continue
        u.ids[eid] = ts
    return gone


class Store(Protocol):
    """The local copy of a table (Faust's store), written directly."""

    def write_epoch(self, partition: int, writes: list[Write], changelog_offset: int) -> None:
        """Apply the writes and set the persisted offset, atomically where the store can."""


class RocksStore:
    """Faust's RocksDB store: one WriteBatch per epoch, the persisted offset inside it.

    Written with RocksDB's write-ahead log, so an epoch in the store survives a crash and a
    restart reads only the changelog after it (decision 44: without the log, as Kafka Streams
    writes its stores, a restart re-read what the memtables had lost, 2.6 times as long)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def write_epoch(self, partition: int, writes: list[Write], changelog_offset: int) -> None:
        import rocksdict

        batch = rocksdict.WriteBatch(raw_mode=True)
        for k, v in writes:
            if v is None:
                batch.delete(k)
            else:
                batch.put(k, v)
        batch.put(self.store.offset_key, str(changelog_offset).encode())
        self.store._db_for_partition(partition).write(batch)


class MemoryStore:
    """Faust's memory store (a dict): no persisted offset (it re-reads the whole changelog)."""

    def __init__(self, store: Any) -> None:
        self.data = store.data

    def write_epoch(self, partition: int, writes: list[Write], changelog_offset: int) -> None:
        for k, v in writes:
            if v is None:
                self.data.pop(k, None)
            else:
                self.data[k] = v


def store_of(table: Any) -> Store:
    store = table.data
    if hasattr(store, "_db_for_partition"):
        return RocksStore(store)
    return MemoryStore(store)


# send_all(topic, partition, writes): sends the writes in order, returns the changelog offset
# of the last one once every one is acknowledged
SendAll = Callable[[str, int, list[Write]], Awaitable[int]]


class WrittenBatch:
    """A record batch the compiled core wrote (`write_record_batches`), given to aiokafka's
    producer as its `BatchBuilder` would be: closed, so nothing is appended to it, and sent as
    it is (the broker sets its offsets)."""

    def __init__(self, data: bytes, count: int) -> None:
        self._buffer = data
        self._count = count

    def append(self, **_: Any) -> None:
        return None  # closed: the producer makes a batch of its own for other messages

    def close(self) -> None:
        pass

    def closed(self) -> bool:
        return True

    def _build(self) -> bytes:
        return self._buffer

    def size(self) -> int:
        return len(self._buffer)

    def record_count(self) -> int:
        return self._count


async def send_as_batches(producer: Any, topic: str, partition: int, writes: list[Write]) -> int:
    """An epoch's writes as record batches of an aiokafka producer (written in one call of the
    compiled core when it is there, else by one append each: not one send each), in order; the
    changelog offset of the last one, once all are acknowledged. The core's batches are those
    aiokafka's builder writes (tests/unit/test_kafka_records.py), without its per-record Python
    call: at 50,000 records/s live, a tenth of the event loop (decision 59)."""
    if write_record_batches is not None and getattr(producer, "_txn_manager", None) is None:
        # (an idempotent or transactional producer numbers its batches: its own builder then)
        max_bytes = producer._message_accumulator._batch_size
        now_ms = int(time.time() * 1000)
        futs = [
            (await producer.send_batch(WrittenBatch(data, n), topic, partition=partition), n)
            for data, n in write_record_batches(writes, now_ms, max_bytes)
        ]
        last = -1
        for fut, count in futs:
            md = await fut
            last = md.offset + count - 1
        return last
    sent: list[tuple[Any, int]] = []
    batch, n = producer.create_batch(), 0
    for k, v in writes:
        if batch.append(key=k, value=v, timestamp=None) is None:
            sent.append((await producer.send_batch(batch, topic, partition=partition), n))
            batch, n = producer.create_batch(), 0
            if batch.append(key=k, value=v, timestamp=None) is None:
                raise ValueError(f"a value of {len(v or b'')} bytes does not fit a batch")
        n += 1
    if n:
        sent.append((await producer.send_batch(batch, topic, partition=partition), n))
    last = -1
    for fut, count in sent:
        md = await fut
        last = md.offset + count - 1  # a batch's records take consecutive offsets
    return last


@dataclass
class Epoch:
    """The open epoch of one partition: what it changed and what waits for its commit."""

    opened: float = field(default_factory=time.monotonic)
    events: list[Any] = field(default_factory=list)  # Faust events, acknowledged at the end
    side: list[Awaitable[Any]] = field(default_factory=list)  # side outputs' acknowledgements
    keys: set[str] = field(default_factory=set)  # entities changed (or removed)
    ids: list[Write] = field(default_factory=list)  # event ids added and dropped, in order
    marker: int = -1  # the last message applied (offset in the stage's input topic)
    touched: bool = False  # anything at all to persist (the meta, at least)
    after: list[Callable[[], Any]] = field(default_factory=list)  # run once committed


@dataclass
class Closed:
    """An epoch closed: its writes, serialized when it closed."""

    partition: int
    writes: list[Write]
    events: list[Any]
    side: list[Awaitable[Any]]
    after: list[Callable[[], Any]]
    keys: int


class EpochCommitter:
    """The epochs of one stage: the open one per partition, and the commits in flight."""

    def __init__(
        self,
        stage: str,
        changelog_topic: str,
        send_all: SendAll,
        store: Callable[[], Store],
        interval: float,
        on_error: Callable[[BaseException], Awaitable[None]],
    ) -> None:
        self.stage = stage
        self.changelog_topic = changelog_topic
        self.send_all = send_all
        self.store = store
        self.interval = interval
        self.on_error = on_error
        self.open: dict[int, Epoch] = {}
        self.commits: dict[int, asyncio.Task[None]] = {}
        # partitions whose commit failed: their later epochs are dropped too (their input is
        # never acknowledged, so it is read again, by this process after a reload or another)
        self.failed: set[int] = set()
        # epochs committed, their table writes and entities written, the seconds spent
        # serializing them when they closed and committing them (exported on /metrics)
        self.stats = {
            "epochs": 0,
            "writes": 0,
            "entities": 0,
            "close_seconds": 0.0,
            "commit_seconds": 0.0,
        }

    def epoch(self, partition: int) -> Epoch:
        ep = self.open.get(partition)
        if ep is None:
            ep = self.open[partition] = Epoch()
        return ep

    def due(self, partition: int) -> bool:
        ep = self.open.get(partition)
        return ep is not None and time.monotonic() - ep.opened >= self.interval

    def close(
        self,
        partition: int,
        entities: Any,
        encode: Callable[[Any], bytes],
        meta: bytes,
        tombstones: bytes | None,
    ) -> None:
        """Close the partition's open epoch: serialize its writes now, from the partition's
        `entities` (users or customers; those of the epoch's keys that are gone are deleted),
        its `meta` and its `tombstones` (None: unchanged), and commit them after the
        partition's earlier epochs (in the background)."""
        ep = self.open.pop(partition, None)
        if ep is None or not (ep.touched or ep.events or ep.keys or ep.ids):
            return
        started = time.monotonic()
        writes: list[Write] = [(meta_key(partition), meta)]
        if tombstones is not None:
            writes.append((forgot_key(partition), tombstones))
        writes += ep.ids
        writes += entity_writes(entities, ep.keys, encode)
        if ep.marker >= 0:
            writes.append((applied_key(partition), str(ep.marker).encode()))
        closed = Closed(partition, writes, ep.events, ep.side, ep.after, len(ep.keys))
        self.stats["close_seconds"] += time.monotonic() - started
        prev = self.commits.get(partition)
        self.commits[partition] = asyncio.ensure_future(self._commit(closed, prev))

    async def _commit(self, ep: Closed, prev: asyncio.Task[None] | None) -> None:
        if prev is not None:
            await asyncio.shield(prev)
        if ep.partition in self.failed:
            return  # an earlier epoch was not persisted: neither is this one, nor acknowledged
        started = time.monotonic()
        try:
            if ep.side:  # 1. side outputs acknowledged
                await asyncio.gather(*ep.side)
            # 2. the state to the changelog, in order (the producer keeps a partition's order)
            last = await self.send_all(self.changelog_topic, ep.partition, ep.writes)
            # 3. the local store, one batch, with the changelog offset it reflects
            self.store().write_epoch(ep.partition, ep.writes, last)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("%s %d: an epoch could not be persisted (%s)", self.stage, ep.partition, exc)
            self.failed.add(ep.partition)
            await self.on_error(exc)
            return
        # 4. the input acknowledged: Faust may now commit the offsets of its messages
        for event in ep.events:
            event.ack()
        for fn in ep.after:
            fn()
        self.stats["epochs"] += 1
        self.stats["writes"] += len(ep.writes)
        self.stats["entities"] += ep.keys
        self.stats["commit_seconds"] += time.monotonic() - started

    async def wait(self, partitions: Iterable[int] | None = None) -> None:
        """Wait for the commits in flight (of the given partitions, default all)."""
        parts = list(self.commits) if partitions is None else list(partitions)
        for p in parts:
            task = self.commits.get(p)
            if task is not None:
                await asyncio.shield(task)
                if self.commits.get(p) is task:
                    del self.commits[p]

    def pending(self) -> int:
        """Input messages applied and not yet acknowledged (open and committing epochs)."""
        return sum(len(ep.events) for ep in self.open.values())
