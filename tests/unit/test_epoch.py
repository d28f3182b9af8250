"""The epoch protocol (agents/epoch.py) under crashes, with the real stages and a simulated Kafka.

The users and accounts stages of agents/ run as the worker runs them (agents/users.py,
agents/accounts.py, agents/epoch.py), against a small in-memory Kafka: per partition a log of
micro-batches and of account facts (their input), a changelog per table, a local store that
Faust's recovery rebuilds from the changelog after its persisted offset, and a committed
position that advances over acknowledged input only. Epochs span several messages and commit
in the background while later messages are applied (pipelining).

A crash strikes inside an epoch's commit at every point of the protocol: before the side
outputs are acknowledged, after each of its changelog writes, after the local store write,
after the input is acknowledged. The process then loses everything in memory (the commits in
flight of every partition included), the store is recovered from the changelog, and the input
is delivered again from the committed offsets. The final state must equal the per-message
protocol's without crashes (tests/unit/test_live.py, itself held to replay), and every kind of
crash point must have been hit.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from agents.accounts import AccountsStage, load_account_partition
from agents.delays import DelayHistogram
from agents.epoch import EpochCommitter, Stored, attach_ids, read_partition
from agents.forget import forget_message
from agents.internal import Names
from agents.users import UsersStage, load_user_partition
from streams.codec import decode_id, decode_id_key, decode_meta, decode_user, encode_batch
from streams.config import Config
from streams.engine import Partial, finalize
from streams.live import Batch, LiveAccountPartition, LiveUserPartition, owner_of
from streams.records import PRODUCT_EVENTS
from streams.timeutil import HOUR, MS, format_instant, parse_as_of
from tests.unit.test_live import PYTHON_PARTS, Parts, feed, make_input, parts, run_worlds

__all__ = ["parts"]  # the fixture: every test taking `parts` runs on both engines

OFFSET_KEY = b"__offset__"


class Crash(Exception):
    """The process dies here."""


def done(value: Any) -> asyncio.Future[Any]:
    f: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    f.set_result(value)
    return f


class Event:
    """A Faust event: acknowledged by the epoch that persisted its effects."""

    def __init__(self, kafka: Kafka, stream: tuple[str, int], offset: int) -> None:
        self.kafka, self.stream, self.offset = kafka, stream, offset

    def ack(self) -> None:
        self.kafka.acked[self.stream].add(self.offset)


class Kafka:
    """What survives a crash: the logs, the changelogs, the local stores, committed offsets."""

    def __init__(self, n: int) -> None:
        self.logs: dict[tuple[str, int], list[bytes]] = {}
        self.changelog: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
        self.store: dict[tuple[str, int], dict[bytes, bytes]] = {}
        self.committed: dict[tuple[str, int], int] = {}
        self.acked: dict[tuple[str, int], set[int]] = {}
        self.processes: list[Any] = []  # the worker processes run on it, in order (not state)
        for kind in ("users", "accounts"):
            for p in range(n):
                key = (kind, p)
                self.logs[key], self.changelog[key], self.store[key] = [], [], {}
                self.committed[key], self.acked[key] = 0, set()

    def commit(self, rng: random.Random) -> None:
        """Faust's periodic commit: the run of consecutive acknowledged offsets."""
        for key, acked in self.acked.items():
            if rng.random() < 0.5:
                nxt = self.committed[key]
                while nxt in acked:
                    nxt += 1
                self.committed[key] = nxt

    def recover(self) -> None:
        """Faust's table recovery: the changelog after the store's persisted offset."""
        for key, log in self.changelog.items():
            store = self.store[key]
            start = int(store.get(OFFSET_KEY, b"-1")) + 1
            for k, v in log[start:]:
                if v is None:
                    store.pop(k, None)
                else:
                    store[k] = v
            if log:
                store[OFFSET_KEY] = str(len(log) - 1).encode()


class Process:
    """One worker process: the stages of agents/ over partitions loaded from the stores."""

    def __init__(
        self, kafka: Kafka, cfg: Config, n: int, crash: CrashPlan, parts: Parts = PYTHON_PARTS
    ) -> None:
        self.parts = parts
        self.kafka = kafka
        self.s = self
        self.config = cfg
        self.P = n
        self.names = Names("", "app")
        self.app = self
        self.producer = self
        self.crash = crash
        self.stats = {"batches": 0, "records": 0, "sweeps": 0}
        self.delays = DelayHistogram()
        self.user_parts: dict[int, LiveUserPartition] = {}
        self.acct_parts: dict[int, LiveAccountPartition] = {}
        self.user_tombs: dict[int, Any] = {}
        self.recent_forwards: dict[int, Any] = {}
        self.acct_tombs: dict[int, Any] = {}
        self.health_pending: dict[int, set[str]] = {}
        self.health_pub = None
        self.dead = False
        self._locks: dict[Any, asyncio.Lock] = {}
        self.users = UsersStage(self, self._committer("users"))  # type: ignore[arg-type]
        self.accounts = AccountsStage(self, self._committer("accounts"))  # type: ignore[arg-type]

    def _committer(self, stage: str) -> EpochCommitter:
        async def send_all(topic: str, p: int, writes: list[tuple[bytes, bytes | None]]) -> int:
            # a crash may strike between any two writes (Kafka makes a record batch atomic,
            # so real crash points are a subset of these)
            log = self.kafka.changelog[(stage, p)]
            for key, value in writes:
                if self.dead:
                    raise Crash("dead")
                self.crash.point("write", self)
                log.append((key, value))
                await asyncio.sleep(0)
            return len(log) - 1

        kafka = self.kafka
        proc = self

        class Store:
            def write_epoch(self, p: int, writes: Any, changelog_offset: int) -> None:
                if proc.dead:
                    raise Crash("dead")
                store = kafka.store[(stage, p)]
                for k, v in writes:
                    if v is None:
                        store.pop(k, None)
                    else:
                        store[k] = v
                store[OFFSET_KEY] = str(changelog_offset).encode()

        async def failed(exc: BaseException) -> None:
            assert isinstance(exc, Crash), exc
            self.dead = True

        committer = EpochCommitter(stage, f"{stage}-changelog", send_all, Store, 10**9, failed)
        real_commit = committer._commit

        async def commit(ep: Any, prev: Any) -> None:  # crash points around the writes
            if prev is not None:
                await asyncio.shield(prev)
            if self.dead:
                return
            acks = []
            for e in ep.events:
                acks.append(e)
            try:
                self.crash.point("side", self)
            except Crash:
                self.dead = True
                return
            ep.events = [_Guard(e, self) for e in acks]
            await real_commit(ep, None)

        committer._commit = commit  # type: ignore[method-assign]
        return committer

    # what the stages use of agents.worker.Worker ---------------------------------------------
    def topic(self, base: str) -> str:
        return base

    def now(self) -> int:
        return 2_000_000_000_000_000_000

    def lock(self, key: Any) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def send(self, topic: str, key: Any, value: Any, p: Any, ts: Any, headers: Any) -> Any:
        if topic == self.names.batches:
            self.kafka.logs[("users", p)].append(value)
        elif topic == self.names.account_facts:
            self.kafka.logs[("accounts", p)].append(value)
        return done(None)  # dead letters, churn signals: not followed here

    async def read_internal(self, topic: str, p: int, offsets: range) -> list[tuple[int, bytes]]:
        kind = "users" if topic == self.names.batches else "accounts"
        return [(o, self.kafka.logs[(kind, p)][o]) for o in offsets]

    def user_part(self, p: int) -> LiveUserPartition:
        if p not in self.user_parts:
            stored = read_partition(self.kafka.store[("users", p)].items(), p)
            part, tombs = load_user_partition(
                self.config, p, self.P, stored, self.now(), self.parts[0]
            )
            self.user_parts[p] = part
            if tombs is not None:
                self.user_tombs[p] = tombs
        return self.user_parts[p]

    def acct_part(self, p: int) -> LiveAccountPartition:
        if p not in self.acct_parts:
            stored = read_partition(self.kafka.store[("accounts", p)].items(), p)
            part, tombs = load_account_partition(self.config, p, stored, self.now(), self.parts[1])
            self.acct_parts[p] = part
            if tombs is not None:
                self.acct_tombs[p] = tombs
        return self.acct_parts[p]


class _Guard:
    """An event whose acknowledgement is a crash point too."""

    def __init__(self, event: Event, proc: Process) -> None:
        self.event, self.proc = event, proc

    def ack(self) -> None:
        if self.proc.dead:
            return
        try:
            self.proc.crash.point("ack", self.proc)
        except Crash:
            self.proc.dead = True
            return
        self.event.ack()


class CrashPlan:
    """Where the next crash strikes: with probability `rate` per epoch commit, at a random
    step of it. Records which kinds of points were hit."""

    def __init__(self, rng: random.Random, rate: float) -> None:
        self.rng = rng
        self.rate = rate
        self.hit: dict[str, int] = {}
        self.armed: tuple[str, int] | None = None
        self.writes = 0

    def point(self, kind: str, proc: Process) -> None:
        if kind == "side":  # an epoch's commit starts: decide whether and where it crashes
            self.writes = 0
            self.armed = None
            if self.rng.random() < self.rate:
                where = self.rng.choice(["side", "write", "write", "write", "ack"])
                self.armed = (where, self.rng.randrange(6))
        armed = self.armed
        if armed is None:
            return
        if kind == "write":
            self.writes += 1
        if armed[0] == kind and (kind != "write" or self.writes > armed[1]):
            label = (
                kind if kind != "write" else ("first write" if self.writes == 1 else "later write")
            )
            self.hit[label] = self.hit.get(label, 0) + 1
            self.armed = None
            raise Crash(label)


async def run_world(
    envs: list[dict[str, Any]], n: int, seed: int, rate: float, parts: Parts = PYTHON_PARTS
) -> tuple[Kafka, CrashPlan, int]:
    rng = random.Random(seed)
    kafka = Kafka(n)
    for b in _batches(envs, n):
        kafka.logs[("users", b.partition)].append(encode_batch(b))
    cfg = Config()
    plan = CrashPlan(rng, rate)
    crashes = 0
    while True:
        proc = Process(kafka, cfg, n, plan, parts)
        kafka.processes.append(proc)
        pos = dict(kafka.committed)
        while not proc.dead:
            ready = [k for k in pos if pos[k] < len(kafka.logs[k])]
            if not ready:
                # quiet: close every epoch, let the commits finish
                for stage in (proc.users, proc.accounts):
                    for p in list(stage.epochs.open):
                        stage.close(p)
                    await stage.epochs.wait()
                for key, acked in kafka.acked.items():
                    nxt = kafka.committed[key]
                    while nxt in acked:
                        nxt += 1
                    kafka.committed[key] = nxt
                if proc.dead:
                    break
                if all(pos[k] >= len(kafka.logs[k]) for k in pos) and all(
                    kafka.committed[k] >= len(kafka.logs[k]) for k in pos
                ):
                    return kafka, plan, crashes
                continue
            key = rng.choice(ready)
            kind, p = key
            offset = pos[key]
            pos[key] = offset + 1
            stage = proc.users if kind == "users" else proc.accounts
            value = kafka.logs[key][offset]
            await stage.message(p, offset, value, Event(kafka, key, offset))
            if rng.random() < 0.3:  # an epoch closes (a timer): 1-3 messages an epoch
                stage.close(p)
            await asyncio.sleep(0)  # the commits in flight make progress meanwhile
            if rng.random() < 0.2:
                kafka.commit(rng)
        # the process died: its commits in flight die with it
        crashes += 1
        for stage in (proc.users, proc.accounts):
            for task in stage.epochs.commits.values():
                task.cancel()
            await asyncio.gather(*stage.epochs.commits.values(), return_exceptions=True)
        kafka.recover()


def _batches(envs: list[dict[str, Any]], n: int) -> list[Any]:
    class Sink:
        def __init__(self) -> None:
            self.logs: dict[str, dict[int, list[Any]]] = {"u": {p: [] for p in range(n)}}

    sink = Sink()
    feed(sink, envs, batch_size=17)  # type: ignore[arg-type]
    return [b for p in range(n) for b in sink.logs["u"][p]]


def snapshot(kafka: Kafka, n: int, as_of: str) -> dict[str, Any]:
    kafka.recover()
    t = parse_as_of(as_of)
    total = Partial()
    cfg = Config()
    for p in range(n):
        up, _ = load_user_partition(cfg, p, n, _stored(kafka, "users", p), None)
        ap, _ = load_account_partition(cfg, p, _stored(kafka, "accounts", p), None)
        total.merge(up.engine.partial(t))
        total.merge(ap.engine.partial(t))
    return finalize(total, t, cfg)


def _stored(kafka: Kafka, kind: str, p: int) -> Stored:
    return read_partition(((k, v) for k, v in kafka.store[(kind, p)].items() if k != OFFSET_KEY), p)


def stored_ids(kafka: Kafka, n: int) -> dict[int, list[tuple[bytes, bytes]]]:
    """Each user partition's stored event ids, after checking that the users' stored values
    hold none and that every stored id belongs to a stored user that applied its record."""
    kafka.recover()
    out = {}
    for p in range(n):
        stored = _stored(kafka, "users", p)
        users = {k: decode_user(v) for k, v in stored.entities.items()}
        assert all(u.ids == {} for u in users.values())
        assert attach_ids(users, stored.ids, lambda sp: (PRODUCT_EVENTS, sp)) == []
        out[p] = sorted(stored.ids)
    return out


def test_a_crash_at_every_step_of_the_epoch_protocol_changes_nothing(parts: Parts) -> None:
    """With the Python partitions and with the compiled core's (whose epochs export the
    entities' stored bytes from the core)."""
    n = 3
    envs, as_of = make_input(n, seed=11)
    ((per_message, _),) = run_worlds(envs, as_of, n, ((0.0, 1, 0.0),))
    clean_kafka, _, clean_crashes = asyncio.run(run_world(envs, n, seed=1, rate=0.0, parts=parts))
    assert clean_crashes == 0
    # each input record's delay counted once (agents/delays.py), forwarded ones where applied
    batches = _batches(envs, n)
    assert clean_kafka.processes[0].delays.count == sum(len(b.records) for b in batches) > 1000
    clean = snapshot(clean_kafka, n, as_of)
    assert clean == per_message
    assert clean["accepted"] > 1000 and clean["duplicates"] > 0
    # the event ids: under their own keys, and the sweeps deleted those they dropped
    clean_ids = stored_ids(clean_kafka, n)
    assert 100 < sum(map(len, clean_ids.values())) < clean["accepted"] / 2
    # a crash in one commit of ten (each epoch also writes its event ids: with more writes per
    # commit, a higher rate crashed most commits and the run took minutes)
    kafka, plan, crashes = asyncio.run(run_world(envs, n, seed=2, rate=0.1, parts=parts))
    assert crashes > 20
    for label in ("side", "first write", "later write", "ack"):
        assert plan.hit.get(label, 0) >= 3, plan.hit
    assert snapshot(kafka, n, as_of) == clean
    # the ids any record can still meet are those of the clean run; an id already older than
    # the dedupe window may be held in one run and not the other (a redelivered micro-batch can
    # sweep again after a later record added it), which no record can observe
    held, clean_held = live_ids(kafka, n), live_ids(clean_kafka, n)
    assert held == clean_held
    assert sum(map(len, clean_held.values())) > 100


def live_ids(kafka: Kafka, n: int) -> dict[int, list[tuple[bytes, bytes]]]:
    """`stored_ids` without those no record can meet any more: older than the dedupe window
    (`expire_user_changes`' ids cut: lateness and an hour) before the partition's last fold
    point for expiry (`LiveUserPartition.sweep_fold`, every source read to its end: its
    slowest source's newest record timestamp or its watermark, less the margin)."""
    cfg = Config()
    out = {}
    for p, ids in stored_ids(kafka, n).items():
        meta = decode_meta(_stored(kafka, "users", p).meta)
        newest = [meta.watermark, *(ms * MS for ms in (getattr(meta, "srcw", None) or {}).values())]
        cut = min(newest) - int(cfg.fold_margin_seconds * 10**9) - cfg.lateness_ns - HOUR
        out[p] = [(k, v) for k, v in ids if decode_id(v)[0] >= cut]
    return out


def _event(offset: int, user: str, eid: str, ts_ms: int) -> tuple[int, int, bytes, bytes]:
    body = {"event_id": eid, "type": "login", "user_id": user, "ts": format_instant(ts_ms * MS)}
    return (offset, ts_ms, user.encode(), json.dumps(body).encode())


def test_event_ids_are_stored_apart_and_a_restart_and_a_forget_honour_them(parts: Parts) -> None:
    """A record writes its event id under a key of its own (the user's value holds none); a
    restarted worker dedupes against the stored ids; a forget deletes the user's ids with it."""
    n = 1
    kafka = Kafka(n)
    t0 = 1_790_000_000_000
    users = ["u-a", "u\x00b"]  # any character in an id, a NUL included
    kafka.logs[("users", 0)].append(
        encode_batch(
            Batch(PRODUCT_EVENTS, 0, [_event(i, users[i % 2], f"e{i}", t0 + i) for i in range(6)])
        )
    )

    async def run(proc: Process) -> None:
        log = kafka.logs[("users", 0)]
        for off in range(kafka.committed[("users", 0)], len(log)):
            await proc.users.message(0, off, log[off], Event(kafka, ("users", 0), off))
        proc.users.close(0)
        await proc.users.epochs.wait()
        kafka.committed[("users", 0)] = len(log)

    plan = CrashPlan(random.Random(0), 0.0)
    asyncio.run(run(Process(kafka, Config(), n, plan, parts)))
    ids = stored_ids(kafka, n)[0]
    assert [decode_id_key(k) for k, _ in ids] == sorted((users[i % 2], f"e{i}") for i in range(6))
    assert sorted(decode_id(v) for _, v in ids) == [((t0 + i) * 10**6, 0, i) for i in range(6)]
    # a new process: the same events again (a producer's retry) are duplicates, one is new
    again = [_event(6 + i, users[i % 2], f"e{i}", t0 + i) for i in range(6)]
    again.append(_event(12, "u-a", "e-new", t0 + 20))
    kafka.logs[("users", 0)].append(encode_batch(Batch(PRODUCT_EVENTS, 0, again)))
    proc = Process(kafka, Config(), n, plan, parts)
    asyncio.run(run(proc))
    assert (proc.user_parts[0].meta.accepted, proc.user_parts[0].meta.duplicates) == (7, 6)
    assert len(stored_ids(kafka, n)[0]) == 7
    # a forget: the user's ids go with it, the other user's stay
    kafka.logs[("users", 0)].append(forget_message("u-a", "req-1"))
    asyncio.run(run(Process(kafka, Config(), n, plan, parts)))
    left = [decode_id_key(k) for k, _ in stored_ids(kafka, n)[0]]
    assert left == [("u\x00b", "e1"), ("u\x00b", "e3"), ("u\x00b", "e5")]


def test_owner_of_is_the_partition_of_every_stored_user() -> None:
    n = 3
    envs, _ = make_input(n, seed=12)
    kafka, _, _ = asyncio.run(run_world(envs, n, seed=3, rate=0.0))
    kafka.recover()
    users = 0
    for p in range(n):
        for uid in _stored(kafka, "users", p).entities:
            assert owner_of(uid, n) == p
            users += 1
    assert users > 50


def test_writes_sent_as_batches_return_the_last_offset_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """agents/epoch.py `send_as_batches` with aiokafka's builder (no compiled core): writes
    fill record batches in order, a full batch is sent and a new one started, and the offset
    returned is the last write's."""
    from agents import epoch
    from agents.epoch import send_as_batches

    monkeypatch.setattr(epoch, "write_record_batches", None)

    class FakeBatch:
        def __init__(self) -> None:
            self.records: list[tuple[bytes, bytes | None]] = []

        def append(self, key: bytes, value: bytes | None, timestamp: None) -> object | None:
            if len(self.records) == 3:  # full
                return None
            self.records.append((key, value))
            return object()

    class FakeProducer:
        def __init__(self) -> None:
            self.log: list[tuple[bytes, bytes | None]] = []

        def create_batch(self) -> FakeBatch:
            return FakeBatch()

        async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
            base = len(self.log) + 100  # the changelog already held 100 records
            self.log.extend(batch.records)
            return done(type("Md", (), {"offset": base})())

    writes: list[tuple[bytes, bytes | None]] = [
        (b"k%d" % i, b"v" if i % 2 else None) for i in range(8)
    ]
    producer = FakeProducer()
    last = asyncio.run(send_as_batches(producer, "t", 0, writes))
    assert producer.log == writes
    assert last == 100 + len(writes) - 1
    assert asyncio.run(send_as_batches(FakeProducer(), "t", 0, [])) == -1


def test_writes_sent_as_the_cores_batches_return_the_last_offset_in_order() -> None:
    """`send_as_batches` with the compiled core: the batches it writes hold the writes in
    order, each under the producer's batch size, as aiokafka reads them, and the offset
    returned is the last write's; a producer that numbers its batches (idempotent or
    transactional) gets them from its own builder."""
    from aiokafka.record.memory_records import MemoryRecords

    from agents.epoch import WrittenBatch, send_as_batches
    from tests.unit.test_native_live import _native

    _native()  # fails in CI without the compiled core, skips elsewhere

    class FakeProducer:
        def __init__(self, numbered: bool = False) -> None:
            self.log: list[tuple[bytes, bytes | None]] = []
            self._message_accumulator = type("Acc", (), {"_batch_size": 300})()
            self._txn_manager = object() if numbered else None
            self.sizes: list[int] = []

        def create_batch(self) -> Any:  # the builder path (a numbering producer)
            from aiokafka.producer.message_accumulator import BatchBuilder

            return BatchBuilder(300, 0)

        async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
            if not self._txn_manager:
                assert isinstance(batch, WrittenBatch) and batch.closed()
                assert batch.append(timestamp=None, key=b"k", value=b"v") is None
            data = bytes(batch._build())
            self.sizes.append(len(data))
            base = len(self.log) + 100  # the changelog already held 100 records
            records = MemoryRecords(data).next_batch()
            assert records is not None and records.validate_crc()
            got = [(bytes(r.key), None if r.value is None else bytes(r.value)) for r in records]
            assert len(got) == batch.record_count()
            self.log.extend(got)
            return done(type("Md", (), {"offset": base})())

    writes: list[tuple[bytes, bytes | None]] = [
        (b"k%d" % i, (b"v" * (i % 50)) if i % 3 else None) for i in range(40)
    ]
    for numbered in (False, True):
        producer = FakeProducer(numbered)
        last = asyncio.run(send_as_batches(producer, "t", 0, writes))
        assert producer.log == writes
        assert last == 100 + len(writes) - 1
        assert len(producer.sizes) > 3 and max(producer.sizes) < 300
    assert asyncio.run(send_as_batches(FakeProducer(), "t", 0, [])) == -1
