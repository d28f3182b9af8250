"""The live pipeline's processing rules, without Kafka: micro-batches in, side outputs out.

A worker receives *micro-batches*: the records of one source topic-partition, in offset order
(`Batch`). `LiveUserPartition.apply` runs them through exactly the engine that replay runs and
returns what must be published (dead letters, forwards to the user's owning partition, account
facts, churn signals) and which entities changed. The runtime (agents/) then publishes the side
outputs, waits for their acknowledgement, writes the partition's `Meta`, then each dirty user.

Idempotency (docs/architecture.md): every user state remembers, per source topic-partition, the
last offset applied to it, and `Meta` the last offset counted. A record is applied to a user
only when its offset is newer than the user's, and counted only when newer than the meta's.
Because the meta is written before the users, a crash anywhere leaves meta >= user, so a
redelivered record is applied again only to users whose write was lost (giving the same outcome
from the same state) and is never counted twice. Side outputs are published before any state
that records them, so none is lost; their consumers dedupe on the source offset.
"""

from __future__ import annotations

import pickle
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from streams.config import Config
from streams.engine import ACCEPTED, AccountPartition, UserPartition, _max_below
from streams.errors import Reject
from streams.partitioner import kafka_partition
from streams.records import (
    PRODUCT_EVENTS,
    REJECT_REASONS,
    SURVEY_ANSWERS,
    decode_product,
    decode_survey,
    time_reason,
)
from streams.state import AccountState, UserState
from streams.timeutil import DAY, MS, DayCalc, Instant

DORMANT_AFTER = 14 * DAY

# A source record: (offset, record timestamp ms, key bytes or None, value bytes or None)
Record = tuple[int, int, "bytes | None", "bytes | None"]


@dataclass
class Batch:
    """Records of one source topic-partition, in offset order."""

    topic: str
    partition: int
    records: list[Record]


_OWNER_CACHE: dict[tuple[str, int], int] = {}


def owner_of(user_id: str, partitions: int) -> int:
    """The partition that owns a user (or a customer): Kafka's default partitioner on the id.
    Cached: the pure-Python murmur2 is the most expensive step of routing a record."""
    key = (user_id, partitions)
    p = _OWNER_CACHE.get(key)
    if p is None:
        if len(_OWNER_CACHE) >= 1_000_000:
            _OWNER_CACHE.clear()
        p = _OWNER_CACHE[key] = kafka_partition(
            user_id.encode("utf-8", "surrogatepass"), partitions
        )
    return p


class Meta:
    """Per user partition: counters and the last offset counted per source topic-partition."""

    __slots__ = (
        "accepted",
        "dormant_until",
        "duplicates",
        "event_offset",
        "offs",
        "rejected",
        "watermark",
    )

    def __init__(self) -> None:
        # offset (in the micro-batch topic) of the last micro-batch applied, see `missing`; the
        # runtime persists it in a marker written after the entities, not with this meta
        self.event_offset = -1
        # dormant signals are published up to this instant of the worker's clock
        self.dormant_until: Instant | None = None
        self.accepted = 0
        self.duplicates = 0
        self.rejected = dict.fromkeys(REJECT_REASONS, 0)
        self.offs: dict[tuple[str, int], int] = {}
        self.watermark: int | None = None


# (reason, detail, topic, partition, offset, key, record ts, value)
DeadLetter = tuple[str, str, str, int, int, "bytes | None", int, "bytes | None"]
# (signal, customer, instant ns, topic, partition, offset)
Signal = tuple[str, str, Instant, str, int, int]
# (customer, ts, record ts ns, activity, kind, value, topic, partition, offset, user partition)
# A customer's facts come from several user partitions, each in its own source order, so a
# fact's identity for dedupe is (topic, partition, user partition) and the offset.
Fact = tuple[str, Instant, int, bool, int, float, str, int, int, int]


@dataclass
class Output:
    dead_letters: list[DeadLetter] = field(default_factory=list)
    forwards: dict[int, list[Batch]] = field(default_factory=dict)
    facts: dict[int, list[Fact]] = field(default_factory=dict)
    signals: list[Signal] = field(default_factory=list)
    dirty: set[str] = field(default_factory=set)
    applied: int = 0
    skipped: int = 0


class LiveUserPartition:
    """One user partition of a worker: the engine state and its idempotency bookkeeping."""

    def __init__(
        self,
        config: Config,
        partition: int,
        partitions: int,
        account_partitions: int,
        users: MutableMapping[str, UserState] | None = None,
        meta: Meta | None = None,
        daycalc: DayCalc | None = None,
    ) -> None:
        self.partition = partition
        self.partitions = partitions
        self.account_partitions = account_partitions
        self.meta = meta or Meta()
        self.engine = UserPartition(config, users=users, emit=self._emit, daycalc=daycalc)
        self.engine.accepted = self.meta.accepted
        self.engine.duplicates = self.meta.duplicates
        self.engine.rejected = self.meta.rejected
        if self.meta.watermark is not None:
            self.engine.see_record_ts(self.meta.watermark)
        self.lateness = config.lateness_ns
        self._out = Output()
        self._src: tuple[str, int, int] = ("", 0, 0)

    @property
    def users(self) -> MutableMapping[str, UserState]:
        return self.engine.users

    def _emit(
        self, customer: str, ts: Instant, rts: int, act: bool, kind: int, value: float
    ) -> None:
        q = owner_of(customer, self.account_partitions)
        topic, part, off = self._src
        self._out.facts.setdefault(q, []).append(
            (customer, ts, rts, act, kind, value, topic, part, off, self.partition)
        )

    def apply(self, batch: Batch) -> Output:
        out = self._out = Output()
        if not batch.records:  # e.g. the runtime's nudge after a skipped message
            return out
        meta = self.meta
        eng = self.engine
        topic, part = batch.topic, batch.partition
        tp = (topic, part)
        counted = meta.offs.get(tp, -1)
        for offset, rts, key, value in batch.records:
            new = offset > counted
            try:
                if value is None:
                    raise Reject("bad_json", "empty value (a tombstone)")
                if topic == PRODUCT_EVENTS:
                    ev, inst = decode_product(value)
                    uid = ev.user_id
                elif topic == SURVEY_ANSWERS:
                    ans, inst = decode_survey(value)
                    uid = ans.user_id
                else:
                    continue
                reason = time_reason(inst, rts, self.lateness)
                if reason is not None:
                    raise Reject(reason)
            except Reject as exc:
                if new:
                    eng.see_record_ts(rts * MS)
                    eng.rejected[exc.reason] += 1
                    out.dead_letters.append(
                        (exc.reason, exc.detail, topic, part, offset, key, rts, value)
                    )
                    counted = offset
                continue
            owner = owner_of(uid, self.partitions)
            if owner != self.partition:
                if new:  # forwarded unchanged, with its origin; counted where it lands
                    fw = out.forwards.setdefault(owner, [])
                    if not fw or fw[-1].topic != topic or fw[-1].partition != part:
                        fw.append(Batch(topic, part, []))
                    fw[-1].records.append((offset, rts, key, value))
                    counted = offset
                continue
            u = eng.users.get(uid)
            if u is not None and u.offs is not None and u.offs.get(tp, -1) >= offset:
                out.skipped += 1
                counted = max(counted, offset)
                continue
            eng.see_record_ts(rts * MS)
            self._src = (topic, part, offset)
            if topic == PRODUCT_EVENTS:
                outcome = eng.product(ev, inst)
            else:
                outcome = eng.survey(ans, inst)
            u = eng.users[uid]
            if u.offs is None:
                u.offs = {}
            u.offs[tp] = offset
            out.dirty.add(uid)
            out.applied += 1
            if outcome == ACCEPTED:
                if topic == PRODUCT_EVENTS:
                    if ev.type == "subscription_cancelled":
                        out.signals.append(
                            ("cancellation", ev.account_id or uid, inst, topic, part, offset)
                        )
                elif ans.survey == "nps" and ans.score <= 6:
                    out.signals.append(
                        ("nps_detractor", ans.account_id or uid, inst, topic, part, offset)
                    )
                elif ans.survey == "csat" and ans.score <= 2:
                    out.signals.append(
                        ("csat_negative", ans.account_id or uid, inst, topic, part, offset)
                    )
            if new:
                if outcome == ACCEPTED:
                    eng.accepted += 1
                else:
                    eng.duplicates += 1
                counted = offset
        meta.offs[tp] = max(counted, meta.offs.get(tp, -1))
        meta.accepted = eng.accepted
        meta.duplicates = eng.duplicates
        meta.watermark = eng.watermark
        return out

    def dormant_signals(self, until: Instant) -> list[Signal]:
        """Dormant signals (a user's last activity L, with none after, signals at L + 14d) whose
        instant is in (meta.dormant_until, until], and advance the mark. At-least-once: the mark
        is persisted with the next micro-batch's meta write, so a restart may repeat some.
        The signal's customer is the user (no record carries it: it comes from silence)."""
        since = getattr(self.meta, "dormant_until", None)
        if since is None:
            self.meta.dormant_until = until
            return []
        out: list[Signal] = []
        if until <= since:
            return out
        lo, hi = since - DORMANT_AFTER, until - DORMANT_AFTER
        for uid, u in self.engine.users.items():
            if u.last is None and not u.lastp:
                continue
            last = _max_below(u.last, u.lastp, until)
            if last is not None and lo < last <= hi:
                out.append(("dormant", uid, last + DORMANT_AFTER, "", -1, -1))
        self.meta.dormant_until = until
        return out


def missing(last_applied: int, offset: int) -> range:
    """Offsets of the internal topic skipped between the last message applied and this one.

    Faust may skip a message after a restart or a rebalance (its fetcher can resume before it
    seeks to the committed offset: faust-streaming #216, #596) and commit past it. Every
    message of the internal topics must be applied, in order, so the runtime re-reads the
    skipped ones from Kafka and applies them first. Redeliveries (offset <= last) are no gap.
    `last_applied` must come from a marker written after every entity write of that message:
    with the offset committed past it, a message whose writes were cut short by a crash would
    otherwise never be applied again."""
    return range(last_applied + 1, offset) if offset > last_applied + 1 else range(0)


class AccountMeta:
    """Per account partition: the watermark and the last facts message applied."""

    __slots__ = ("event_offset", "watermark")

    def __init__(self) -> None:
        self.watermark: int | None = None
        self.event_offset = -1


class LiveAccountPartition:
    """One customer partition: account facts applied once each (by source offset)."""

    def __init__(
        self,
        config: Config,
        partition: int,
        accounts: MutableMapping[str, AccountState] | None = None,
        meta: AccountMeta | None = None,
        daycalc: DayCalc | None = None,
    ) -> None:
        self.partition = partition
        self.meta = meta or AccountMeta()
        self.engine = AccountPartition(config, accounts=accounts, daycalc=daycalc)
        if self.meta.watermark is not None:
            self.engine.see_record_ts(self.meta.watermark)

    @property
    def accounts(self) -> MutableMapping[str, AccountState]:
        return self.engine.accounts

    def apply(self, facts: list[Fact]) -> set[str]:
        dirty: set[str] = set()
        eng = self.engine
        accounts = eng.accounts
        for customer, ts, rts, act, kind, value, topic, part, off, via in facts:
            a = accounts.get(customer)
            tp = (topic, part, via)
            if a is not None and a.offs is not None and a.offs.get(tp, -1) >= off:
                continue
            eng.fact(customer, ts, rts, act, kind, value)
            a = accounts[customer]
            if a.offs is None:
                a.offs = {}
            a.offs[tp] = off
            dirty.add(customer)
        self.meta.watermark = eng.watermark
        return dirty


# ---- codecs for the runtime's tables and internal topics --------------------------------------
# Entity states are pickled (they hold ints, floats, strs, tuples, lists, dicts and Fractions).
# The tables and internal topics are written and read only by this project's workers.


def dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Any:
    return pickle.loads(data)
