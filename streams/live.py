"""The live pipeline's processing rules, without Kafka: micro-batches in, side outputs out.

A worker receives *micro-batches*: the records of one source topic-partition, in offset order
(`Batch`). `LiveUserPartition.apply` runs them through exactly the engine that replay runs and
returns what must be published (dead letters, forwards to the user's owning partition, account
facts, churn signals) and which entities changed. The runtime (agents/) publishes the side
outputs at once and persists the changes of each commit interval together (an epoch,
agents/epoch.py): once that epoch's side outputs are acknowledged, the partition's `Meta`, then
each entity it changed, once, encoded by streams/codec.py like everything the worker stores or
passes between its stages. The compiled core's twins (streams/native_live.py) follow these
rules, held to them by tests/unit/test_native_live.py.

Idempotency (docs/architecture.md): every user state remembers, per source topic-partition, the
last offset applied to it, and `Meta` the last offset counted. A record is applied to a user
only when its offset is newer than the user's, and counted only when newer than the meta's.
Because the meta is written before the users, a crash anywhere leaves meta >= user, so a
redelivered record is applied again only to users whose write was lost (giving the same outcome
from the same state) and is never counted twice. Side outputs are published before any state
that records them, so none is lost; their consumers dedupe on the source offset.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
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
from streams.timeutil import DAY, HOUR, MS, DayCalc, Instant

DORMANT_AFTER = 14 * DAY

# Live expiry: a partition sweeps when its fold point F crosses a multiple of SWEEP_EVERY of
# event time (counted from the epoch), and sweeps as of that multiple (docs/architecture.md,
# "Expiry in the live worker").
SWEEP_EVERY = 6 * HOUR


# A source (topic-partition) that sent this partition nothing for this long (seconds of the
# worker's clock) no longer holds its expiry back (see LiveUserPartition.sweep_fold). Long
# enough to cover a worker's restart, a rebalance and a catch-up under load (60 s was not: a
# SIGKILL test under CI load saw forwards from a recovering partition judged idle, and answers
# and feature uses then counted differently from the replay); expiry runs every 6 h of event
# time, so holding it back a few minutes more costs nothing.
IDLE_SOURCE_SECONDS = 900.0


def sweep_point(fold: Instant) -> Instant:
    """The sweep point at or before F: the latest multiple of SWEEP_EVERY."""
    return (int(fold) // SWEEP_EVERY) * SWEEP_EVERY


def _sweep_state(meta: Any) -> tuple[Instant | None, int, int]:
    return (
        getattr(meta, "swept", None),
        getattr(meta, "swept_at", -1),
        getattr(meta, "msg_offset", -1),
    )


def _sweep_due(meta: Any, offset: int, fold: Instant, seen: bool) -> Instant | None:
    """The sweep point to sweep at after message `offset`, or None.

    Deterministic under redelivery: a message whose effects the meta already reflects never
    decides anew (its decision was made when it was first applied and is in the meta); the
    message after which the last sweep ran sweeps again at the same point (its entity writes
    may have been lost; sweeping twice at one point changes nothing)."""
    swept, swept_at, msg_offset = _sweep_state(meta)
    if offset == swept_at and swept is not None:
        return swept
    if offset <= msg_offset or not seen:
        return None
    s = sweep_point(fold)
    if swept is not None and s <= swept:
        return None
    return s


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
        "fwd",
        "msg_offset",
        "offs",
        "rejected",
        "srcw",
        "swept",
        "swept_at",
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
        # expiry (see _sweep_due): the last sweep point, the message it ran after, and the
        # offset of the last message this meta reflects
        self.swept: Instant | None = None
        self.swept_at = -1
        self.msg_offset = -1
        # per source topic-partition: the newest record timestamp (ms) received from it
        self.srcw: dict[tuple[str, int], int] = {}
        # (source topic, partition forwarded to) -> the last offset forwarded there, of the
        # source partition this partition reads (its own number): the coverage of a source
        # partition waits for its forwarded records (agents/gather.py)
        self.fwd: dict[tuple[str, int], int] = {}


# An event id added to a user, (user, event id, (ts, product-events partition, offset)), or
# dropped from it, (user, event id, None)
IdChange = tuple[str, str, "tuple[Instant, int, int] | None"]
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
    # account partition -> its facts already as their facts message (streams/codec.py
    # `encode_facts`): what the compiled core gives from `apply_encoded`
    facts_encoded: dict[int, bytes] = field(default_factory=dict)
    signals: list[Signal] = field(default_factory=list)
    dirty: set[str] = field(default_factory=set)
    # users the sweep removed (nothing left of them): deleted from the table, after `dirty`
    deleted: set[str] = field(default_factory=set)
    swept: bool = False
    applied: int = 0
    skipped: int = 0


@dataclass
class Applied:
    """A micro-batch message applied from its bytes (`apply_encoded`): its source topic and
    partition, its number of records, the record timestamps (ms) of those not forwarded to
    another partition, and what applying it gave."""

    topic: str
    partition: int
    records: int
    kept_ts: Sequence[int]
    out: Output


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
        fold_limit: Instant | None = None,
    ) -> None:
        """`fold_limit`: the worker's clock minus the margin when the partition is loaded, so
        a stored watermark ahead of the clock cannot push F past "now" (a restarted worker
        must answer for its own clock)."""
        self.partition = partition
        self.partitions = partitions
        self.account_partitions = account_partitions
        self.meta = meta or Meta()
        self.engine = UserPartition(
            config, users=users, emit=self._emit, daycalc=daycalc, fold_limit=fold_limit
        )
        self.engine.accepted = self.meta.accepted
        self.engine.duplicates = self.meta.duplicates
        self.engine.rejected = self.meta.rejected
        if self.meta.watermark is not None:
            self.engine.see_record_ts(self.meta.watermark)
        self.lateness = config.lateness_ns
        self._out = Output()
        self._src: tuple[str, int, int] = ("", 0, 0)
        self.sweeps = 0  # sweeps run by this object (not persisted)
        # the worker's clock (seconds, monotonic) at the current micro-batch, set by the
        # runtime; None: no source is ever idle (the tests' simulated Kafka)
        self.wall: float | None = None
        self._heard: dict[tuple[str, int], float] = {}  # source -> wall time of its last batch
        # the event ids added and dropped since the last `take_id_changes`, in order
        self.id_changes: list[IdChange] = []

    def log_id_changes(self, changes: list[IdChange]) -> None:
        """Add id changes made outside `apply` (those of loading) to the log."""
        self.id_changes += changes

    def take_id_changes(self) -> list[IdChange]:
        """The event ids added (user, id, (ts, partition, offset)) and dropped (user, id,
        None) since the last call, in the order they happened: the runtime stores each id under
        a key of its own (streams/codec.py `id_key`), so a record writes one small key instead
        of its user's whole id set."""
        out, self.id_changes = self.id_changes, []
        return out

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

    def apply_encoded(self, data: bytes, msg_offset: int | None = None) -> Applied | None:
        """A micro-batch message applied from its bytes, or None (nothing applied) when this
        engine cannot: the Python engine never does, the caller decodes the message (streams/
        codec.py `decode_batch`) and calls `apply`."""
        return None

    def apply(self, batch: Batch, msg_offset: int | None = None) -> Output:
        """Apply one micro-batch, the message at `msg_offset` of the internal topic (None: no
        expiry, e.g. a test of the rules alone). After the records, the partition sweeps when
        F crossed a sweep point (`_sweep_due`); the users the sweep changed are in `dirty`,
        the ones it removed in `deleted`."""
        out = self._out = Output()
        if not batch.records:  # e.g. the runtime's nudge after a skipped message
            if msg_offset is not None:
                self._sweep(msg_offset, out)
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
                    fwd = getattr(meta, "fwd", None)
                    if fwd is None:
                        fwd = meta.fwd = {}
                    fwd[(topic, owner)] = offset
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
                    self.id_changes.append((uid, ev.event_id, (inst, part, offset)))
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
        srcw = getattr(meta, "srcw", None)
        if srcw is None:
            srcw = meta.srcw = {}
        newest = max(r[1] for r in batch.records)
        if newest > srcw.get(tp, newest - 1):
            srcw[tp] = newest
        if self.wall is not None:
            self._heard[tp] = self.wall
        meta.accepted = eng.accepted
        meta.duplicates = eng.duplicates
        meta.watermark = eng.watermark
        if msg_offset is not None:
            self._sweep(msg_offset, out)
        return out

    def _sweep(self, offset: int, out: Output) -> None:
        meta = self.meta
        eng = self.engine
        at = _sweep_due(meta, offset, self.sweep_fold(), eng.watermark is not None)
        if at is not None:
            dead = []
            gone = self.id_changes
            for uid, u in eng.users.items():
                ids = u.ids
                changed, empty = eng.expire_user_changes(u, at)
                if u.ids is not ids and len(u.ids) != len(ids):
                    kept = u.ids
                    gone.extend((uid, eid, None) for eid in ids if eid not in kept)
                if empty:
                    dead.append(uid)
                elif changed:
                    out.dirty.add(uid)
            for uid in dead:
                del eng.users[uid]
                out.dirty.discard(uid)
                out.deleted.add(uid)
            meta.swept, meta.swept_at = at, offset
            out.swept = True
            self.sweeps += 1
        if offset > _sweep_state(meta)[2]:
            meta.msg_offset = offset

    def sweep_fold(self) -> Instant:
        """The fold point expiry may use: F, but never later than the slowest source's newest
        record timestamp minus the margin. The contract judges by the partition's newest record
        timestamp, but live the sources of a partition (both input topics, the forwards from
        every other partition) are read independently and one can run days of event time ahead
        of another in a backfill: judged by F, a copy arriving from the slow one would find its
        id forgotten where the replay of the same records in file order would not. A source
        that sent nothing for IDLE_SOURCE_SECONDS of the worker's clock does not hold it back
        (a trickle of survey answers would stop expiry); neither does a source never heard of."""
        eng = self.engine
        srcw = getattr(self.meta, "srcw", None) or {}
        wall = self.wall
        low: int | None = None
        for tp, newest in srcw.items():
            if wall is not None:
                heard = self._heard.get(tp)
                if heard is None:  # not heard of since this worker loaded the partition
                    heard = self._heard[tp] = wall
                if wall - heard > IDLE_SOURCE_SECONDS:
                    continue
            if low is None or newest < low:
                low = newest
        if low is None:
            return eng.fold
        return min(eng.fold, low * MS - eng.margin)

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

    __slots__ = ("event_offset", "msg_offset", "swept", "swept_at", "watermark")

    def __init__(self) -> None:
        self.watermark: int | None = None
        self.event_offset = -1
        self.swept: Instant | None = None  # expiry: as in Meta
        self.swept_at = -1
        self.msg_offset = -1


class LiveAccountPartition:
    """One customer partition: account facts applied once each (by source offset)."""

    def __init__(
        self,
        config: Config,
        partition: int,
        accounts: MutableMapping[str, AccountState] | None = None,
        meta: AccountMeta | None = None,
        daycalc: DayCalc | None = None,
        fold_limit: Instant | None = None,
    ) -> None:
        self.partition = partition
        self.meta = meta or AccountMeta()
        self.engine = AccountPartition(
            config, accounts=accounts, daycalc=daycalc, fold_limit=fold_limit
        )
        self.sweeps = 0  # sweeps run by this object (not persisted)
        if self.meta.watermark is not None:
            self.engine.see_record_ts(self.meta.watermark)

    @property
    def accounts(self) -> MutableMapping[str, AccountState]:
        return self.engine.accounts

    def apply_encoded(self, data: bytes, offset: int | None = None) -> set[str] | None:
        """A facts message applied from its bytes, or None (nothing applied) when this engine
        cannot: the Python engine never does, the caller decodes it and calls `apply`."""
        return None

    def apply(self, facts: list[Fact], offset: int | None = None) -> set[str]:
        """Apply one facts message, the message at `offset` of the facts topic (None: no
        expiry); returns the customers to write, those changed by a sweep included."""
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
        if offset is not None:
            at = _sweep_due(self.meta, offset, eng.fold, eng.watermark is not None)
            if at is not None:
                for c, a in accounts.items():
                    if eng.expire_account(a, at):
                        dirty.add(c)
                self.meta.swept, self.meta.swept_at = at, offset
                self.sweeps += 1
            if offset > _sweep_state(self.meta)[2]:
                self.meta.msg_offset = offset
        return dirty
