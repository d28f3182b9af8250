"""The live partitions with the compiled core: `NativeLiveUserPartition` and
`NativeLiveAccountPartition` are `streams.live.LiveUserPartition` / `LiveAccountPartition` with
their per-record work in Rust (`engagement_native.LiveUsers` / `LiveAccounts`, native/src/live.rs):
decoding and validating plainly valid records (the others go to the Python validation, as in
replay: `streams.native._Bridge`), the redelivery rules, routing (Kafka's murmur2), dedupe, the
engine, account facts, churn signals and expiry sweeps. Same constructor, same results:
`apply` returns the `streams.live.Output` the Python class returns, `meta` is the same
`streams.live.Meta` (current after every call; the runtime pickles it), and `users` /
`accounts` read like the Python mappings (each entity exported on demand as a
`streams.state.UserState` / `AccountState`; a copy: changing it changes nothing here).

A value the compiled core cannot hold exactly (an instant finer than attoseconds, i.e. a
timestamp with more than 18 fractional digits, in a record or a loaded state) moves the
partition to the Python class, which then goes on with it (`handed_over`).

Snapshots (`engine.partial(t)`) are computed by a scan of the state in the core
(native/src/partial.rs and account_partial.rs, the mirror of `UserPartition.partial` /
`AccountPartition.partial`, the same Partial field for field, types included;
tests/unit/test_native_partial.py compares them); for a T the core cannot hold (finer than
attoseconds, outside years 1-9999), by the Python engine on the exported state.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from fractions import Fraction
from typing import Any

from streams.codec import MAX_BATCH_BYTES, MAX_BATCH_RECORDS, encode_id_changes
from streams.codec import encode_batches as _py_encode_batches
from streams.config import Config
from streams.distribution import Distribution
from streams.engine import SIGNALS, AccountPartition, Partial, SurveyCounts, UserPartition
from streams.live import (
    DORMANT_AFTER,
    IDLE_SOURCE_SECONDS,
    AccountMeta,
    Applied,
    Batch,
    Fact,
    IdChange,
    LiveAccountPartition,
    LiveUserPartition,
    Meta,
    Output,
    Signal,
)
from streams.native import (
    UNAVAILABLE,
    _Bridge,
    _from_atto,
    _native,
    engine_settings,
)
from streams.records import REJECT_REASONS, SOCIAL_ACTIONS
from streams.replay import Pipeline
from streams.state import AccountState, UserState, _restore_account, _restore_user
from streams.timeutil import NS, DayCalc, Instant

__all__ = [
    "ENGINES",
    "NativeLiveAccountPartition",
    "NativeLiveUserPartition",
    "available",
    "partition_classes",
    "unavailable_reason",
]

ENGINES = ("auto", "native", "python")

_MISSING = object()


def available() -> bool:
    """True when the compiled core is installed and agrees with streams/."""
    return _native is not None


def core_heap_bytes() -> int | None:
    """The bytes the compiled core holds on the heap (its entities, the partials kept between
    asks: native/src/heap.rs), or None without the core."""
    return None if _native is None else int(_native.heap_bytes())


def partition_classes(engine: str = "auto") -> tuple[type[Any], type[Any]]:
    """(user partition class, account partition class) for `engine`: "native" (the compiled
    twins; RuntimeError when the core is not usable), "python" (streams.live), or "auto"
    (native when usable). Both pairs take the same arguments and give the same results."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}")
    if engine == "native":
        _require()
    if engine == "python" or not available():
        return LiveUserPartition, LiveAccountPartition
    return NativeLiveUserPartition, NativeLiveAccountPartition


def encode_batches(topic: str, partition: int, records: list[Any]) -> list[bytes]:
    """streams/codec.py `encode_batches` written by the core (the same bytes), or by Python
    when the core is not usable or a record is not (int, int, bytes or None, bytes or None)."""
    if _native is not None and type(records) is list:
        got: list[bytes] | None = _native.encode_batches(
            topic, partition, records, MAX_BATCH_RECORDS, MAX_BATCH_BYTES
        )
        if got is not None:
            return got
    return _py_encode_batches(topic, partition, records)


def unavailable_reason() -> str:
    """Why the compiled core is not usable ("" when it is)."""
    return "" if _native is not None else str(UNAVAILABLE)


def _require() -> Any:
    if _native is None:
        raise RuntimeError(f"the compiled core (engagement_native) is not usable: {UNAVAILABLE}")
    return _native


class _View(MutableMapping[str, Any]):
    """The entities of a compiled partition as a mapping: each one exported on demand."""

    __slots__ = ("_core",)

    def __init__(self, core: Any) -> None:
        self._core = core

    def __getitem__(self, key: str) -> Any:
        v = self._core.get(key)
        if v is None:
            raise KeyError(key)
        return v

    def get(self, key: str, default: Any = None) -> Any:
        v = self._core.get(key)
        return default if v is None else v

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._core.__contains__(key)

    def __len__(self) -> int:
        return len(self._core)

    def __iter__(self) -> Iterator[str]:
        return iter(self._core.keys())

    def items(self) -> Any:
        return self._core.export().items()

    def values(self) -> Any:
        return self._core.export().values()

    def export(self, keys: Any = None) -> dict[str, Any]:
        """{key: state} of `keys` (every entity when None)."""
        return dict(self._core.export(keys))

    def export_encoded(
        self, keys: Any = None, fill: Callable[[Any], bytes] | None = None
    ) -> dict[str, bytes | None]:
        """{key: its stored bytes} of `keys` (every entity when None; unknown keys left out),
        written by the core (native/src/codec.rs): the bytes of streams.codec's
        `encode_stored_user(export(key))` / `encode_account(...)`. None where the core leaves the
        entity to Python; with `fill` (that codec function) those are encoded here from the
        export, so every value is bytes."""
        out: dict[str, bytes | None] = self._core.export_encoded(keys)
        if fill is not None:
            gaps = [k for k, v in out.items() if v is None]
            if gaps:
                for k, state in self._core.export(gaps).items():
                    out[k] = fill(state)
        return out

    def entity_writes(
        self, keys: Iterable[str], fill: Callable[[Any], bytes]
    ) -> list[tuple[bytes, bytes | None]]:
        """An epoch's table writes of the entities `keys` (agents/epoch.py `entity_writes`),
        written by the core: (key, stored bytes) of those that exist, in the order of their
        ids, then (key, None) of those that are gone. Values the core leaves to Python are
        encoded here by `fill` (that codec function) from the export."""
        writes, gaps = self._core.entity_writes(keys)
        if gaps:
            states = self._core.export([eid for _, eid in gaps])
            for i, eid in gaps:
                writes[i] = (writes[i][0], fill(states[eid]))
        return writes

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        v = self._core.pop(key)
        if v is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return v

    def __delitem__(self, key: str) -> None:
        if self._core.pop(key) is None:
            raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        raise TypeError("the compiled partition's state is read-only from Python")


class _Engine:
    """What the runtime and the tests read of the partition's engine (`UserPartition` /
    `AccountPartition`): `fold_limit` (settable), `margin`, `fold`, `watermark`, `partial(t)`."""

    def __init__(self, owner: Any, config: Config, daycalc: DayCalc) -> None:
        self._owner = owner
        self.config = config
        self.daycalc = daycalc
        self.fold_limit: Instant | None = None
        self.margin = int(config.fold_margin_seconds * NS)
        self.lateness = config.lateness_ns

    @property
    def fold(self) -> Instant:
        return self._owner._core.fold

    @property
    def watermark(self) -> int | None:
        return self._owner._core.watermark

    @property
    def users(self) -> Any:
        return self._owner.users

    @property
    def accounts(self) -> Any:
        return self._owner.accounts


class _UserEngine(_Engine):
    @property
    def accepted(self) -> int:
        return self._owner.meta.accepted

    @property
    def duplicates(self) -> int:
        return self._owner.meta.duplicates

    @property
    def rejected(self) -> dict[str, int]:
        return self._owner.meta.rejected

    def to_python(self) -> UserPartition:
        """A Python UserPartition holding a copy of the whole state."""
        core = self._owner._core
        up = UserPartition(self.config, users=core.export(), daycalc=self.daycalc)
        up.fold_limit = self.fold_limit
        up.accepted = self.accepted
        up.duplicates = self.duplicates
        up.rejected = dict(self.rejected)
        up.watermark = core.watermark
        up.fold = core.fold
        return up

    def partial(self, t: Instant) -> Partial:
        """This partition's partial at T, computed in the core (`UserPartition.partial`'s
        result exactly); for a T the core cannot hold, by the Python engine on the exported
        state."""
        if type(t) is int or type(t) is Fraction:
            d = self._owner._core.partial(t)
            if d is not None:
                return _user_partial(d)
        return self.to_python().partial(t)


class _AccountEngine(_Engine):
    # `partial` scans the customers with the GIL released (agents/gather.py runs the
    # partitions' scans on threads)
    scans_without_gil = True

    def to_python(self) -> AccountPartition:
        core = self._owner._core
        ap = AccountPartition(self.config, accounts=core.export(), daycalc=self.daycalc)
        ap.fold_limit = self.fold_limit
        ap.watermark = core.watermark
        ap.fold = core.fold
        return ap

    def partial(self, t: Instant) -> Partial:
        """`AccountPartition.partial(t)`, computed in the core (see `_UserEngine.partial`)."""
        if type(t) is int or type(t) is Fraction:
            d = self._owner._core.partial(t)
            if d is not None:
                return _account_partial(d)
        return self.to_python().partial(t)


def _user_partial(d: dict[str, Any]) -> Partial:
    """The Partial of the fields `LiveUsers.partial` returns (dicts of fixed keys as lists of
    their values, SurveyCounts as tuples of their fields)."""
    d["rejected"] = dict(zip(REJECT_REASONS, d["rejected"], strict=True))
    d["social"] = dict(zip(SOCIAL_ACTIONS, d["social"], strict=True))
    d["sig1"] = dict(zip(SIGNALS, d["sig1"], strict=True))
    d["sig24"] = dict(zip(SIGNALS, d["sig24"], strict=True))
    d["surveys"] = SurveyCounts(*d["surveys"])
    d["by_tp"] = {tp: SurveyCounts(*c) for tp, c in d["by_tp"].items()}
    ttfv = d["ttfv"]  # sorted: a block of i64 nanoseconds, or a list with Fractions
    d["ttfv"] = Distribution.from_run(array("q", ttfv) if type(ttfv) is bytes else ttfv)
    return Partial(**d)


def _account_partial(d: dict[str, Any]) -> Partial:
    """The Partial of the fields `LiveAccounts.partial` returns (the health scores as a block
    of f64, with the terms of their exact sum, or None to sum the scores themselves)."""
    d["health"] = Distribution.from_run(array("d", d["health"]), d.pop("health_terms"))
    return Partial(**d)


def _set_sweep_meta(meta: Any, swept: Instant | None, swept_at: int, msg_offset: int) -> None:
    """The sweep fields, left unset on a meta written before they existed while they are at
    their defaults (as the Python class leaves them)."""
    for name, value, default in (
        ("swept", swept, None),
        ("swept_at", swept_at, -1),
        ("msg_offset", msg_offset, -1),
    ):
        if value != default or hasattr(meta, name):
            setattr(meta, name, value)


class NativeLiveUserPartition:
    """`streams.live.LiveUserPartition` with the compiled core (same constructor, same
    results)."""

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
        native = _require()
        self.config = config
        self.partition = partition
        self.partitions = partitions
        self.account_partitions = account_partitions
        self.meta = meta or Meta()
        self.daycalc = daycalc or DayCalc(config.timezone)
        self.lateness = config.lateness_ns
        # the worker's clock (seconds, monotonic) at the current micro-batch; see
        # LiveUserPartition.wall
        self.wall: float | None = None
        self._py: LiveUserPartition | None = None
        # id writes before the core's log: of loading, of the core before a hand-over
        self._id_writes: list[tuple[bytes, bytes | None]] = []
        settings = engine_settings(config, self.daycalc)
        settings["idle_source_seconds"] = IDLE_SOURCE_SECONDS
        self._core: Any = native.LiveUsers(
            settings,
            self.daycalc,
            _Bridge(Pipeline(config, 1), None),
            _restore_user,
            _restore_account,
            _from_atto,
            partition,
            partitions,
            account_partitions,
        )
        self.engine: Any = _UserEngine(self, config, self.daycalc)
        self.engine.fold_limit = fold_limit
        self._view = _View(self._core)
        try:
            if fold_limit is not None and type(fold_limit) is not int:
                raise native.NotRepresentable("a fold limit finer than nanoseconds")
            self._core.load(users if users is not None else {}, self.meta, fold_limit)
        except native.NotRepresentable:
            self._py = LiveUserPartition(
                config, partition, partitions, account_partitions, users, self.meta, daycalc,
                fold_limit=fold_limit,
            )  # fmt: skip
            self.engine = self._py.engine

    @classmethod
    def from_encoded(
        cls,
        config: Config,
        partition: int,
        partitions: int,
        account_partitions: int,
        encoded: dict[str, bytes],
        meta: Meta | None = None,
        fold_limit: Instant | None = None,
        ids: list[tuple[bytes, bytes]] | None = None,
    ) -> NativeLiveUserPartition | None:
        """The partition from its stored bytes ({uid: `encode_user` bytes}, and the users'
        event ids: agents/epoch.py `Stored.ids`), read by the core without a Python object per
        user; None when the core cannot be sure to read them as `decode_user` does (or cannot
        hold them): then decode them and use the constructor. The ids are put back as
        agents/epoch.py `attach_ids` does, the deletions of the others logged."""
        part = cls(config, partition, partitions, account_partitions, None, meta, None, fold_limit)
        if part._py is not None:
            return None
        try:
            loaded = part._core.load(encoded, part.meta, fold_limit, True)
            if loaded and ids:
                loaded = part._core.load_ids(ids)
        except _require().NotRepresentable:
            return None
        return part if loaded else None

    def log_id_changes(self, changes: list[IdChange]) -> None:
        """`LiveUserPartition.log_id_changes`."""
        if self._py is not None:
            self._py.log_id_changes(changes)
        else:
            self._id_writes += encode_id_changes(changes)

    def take_id_writes(self) -> list[tuple[bytes, bytes | None]]:
        """The table writes of `LiveUserPartition.take_id_changes`, written by the core."""
        out, self._id_writes = self._id_writes, []
        if self._py is not None:
            return out + encode_id_changes(self._py.take_id_changes())
        got: list[tuple[bytes, bytes | None]] = self._core.take_id_writes()
        return out + got if out else got

    @property
    def handed_over(self) -> bool:
        """True once the partition runs on the Python engine."""
        return self._py is not None

    @property
    def users(self) -> MutableMapping[str, UserState]:
        return self._py.users if self._py is not None else self._view

    @property
    def sweeps(self) -> int:
        return self._py.sweeps if self._py is not None else int(self._core.sweeps)

    def _sync_meta(self) -> None:
        acc, dup, rej, wm, swept, swept_at, msg_offset, offs, srcw = self._core.meta()
        m = self.meta
        m.accepted = acc
        m.duplicates = dup
        r = m.rejected
        for name, n in zip(REJECT_REASONS, rej, strict=True):
            r[name] = n
        m.offs.update(offs)
        if srcw or getattr(m, "srcw", None) is not None:
            if getattr(m, "srcw", None) is None:
                m.srcw = {}
            m.srcw.update(srcw)
        m.watermark = wm
        _set_sweep_meta(m, swept, swept_at, msg_offset)

    def _hand_over(self) -> LiveUserPartition:
        """Move the partition to the Python engine (a value the core cannot hold)."""
        eng = self.engine
        py = LiveUserPartition(
            self.config,
            self.partition,
            self.partitions,
            self.account_partitions,
            self._core.export(),
            self.meta,
            self.daycalc,
        )
        py.engine.fold_limit = eng.fold_limit
        py.engine.watermark = self._core.watermark
        py.engine.fold = self._core.fold
        py.sweeps = int(self._core.sweeps)
        py._heard = dict(self._core.heard())
        py.wall = self.wall
        self._id_writes += self._core.take_id_writes()
        self._py = py
        self.engine = py.engine
        self._core = None
        return py

    def apply_encoded(self, data: bytes, msg_offset: int | None = None) -> Applied | None:
        """`LiveUserPartition.apply_encoded`: the core reads the message (an input topic's
        records) and writes the facts as their messages (`Output.facts_encoded`); None, with
        nothing applied, when it does not (another message, a value it cannot hold, the
        partition moved to the Python engine)."""
        fold_limit = self.engine.fold_limit
        if self._py is not None or not (fold_limit is None or type(fold_limit) is int):
            return None
        got = self._core.apply_encoded(data, msg_offset, fold_limit, self.wall)
        if got is None:
            return None
        topic, part, n, kept_ts, res = got
        self._sync_meta()
        return Applied(
            topic, part, n, memoryview(kept_ts).cast("q"), self._output(topic, part, res)
        )

    def _output(self, topic: str, part: int, res: tuple[Any, ...]) -> Output:
        """The core's answer to a micro-batch as an `Output` (facts as lists of tuples or, when
        the core wrote them, as their messages)."""
        dl, fw, facts, signals, dirty, deleted, swept, applied, skipped = res
        if fw:  # the last offset forwarded to each partition (streams.live.Meta.fwd)
            fwd = getattr(self.meta, "fwd", None)
            if fwd is None:
                fwd = self.meta.fwd = {}
            for q, recs in fw.items():
                if recs:
                    fwd[(topic, q)] = recs[-1][0]
        out = Output(
            dead_letters=dl,
            forwards={q: [Batch(topic, part, recs)] for q, recs in fw.items()},
            signals=signals,
            dirty=dirty,
            deleted=deleted,
            swept=swept,
            applied=applied,
            skipped=skipped,
        )
        if facts:
            if type(next(iter(facts.values()))) is bytes:
                out.facts_encoded = facts
            else:
                out.facts = facts
        return out

    def apply(self, batch: Batch, msg_offset: int | None = None) -> Output:
        """`LiveUserPartition.apply`."""
        if self._py is None:
            fold_limit = self.engine.fold_limit
            res = None
            if fold_limit is None or type(fold_limit) is int:
                records = batch.records
                res = self._core.apply_batch(
                    batch.topic,
                    batch.partition,
                    records if type(records) is list else list(records),
                    msg_offset,
                    fold_limit,
                    self.wall,
                )
            if res is not None:
                self._sync_meta()
                return self._output(batch.topic, batch.partition, res)
            self._hand_over()
        assert self._py is not None
        self._py.wall = self.wall
        return self._py.apply(batch, msg_offset)

    def sweep_fold(self) -> Instant:
        """`LiveUserPartition.sweep_fold`."""
        if self._py is not None:
            self._py.wall = self.wall
            return self._py.sweep_fold()
        return self._core.sweep_fold(self.wall)

    def dormant_signals(self, until: Instant) -> list[Signal]:
        """`LiveUserPartition.dormant_signals` (the signals sorted by user)."""
        if self._py is None:
            since = getattr(self.meta, "dormant_until", None)
            if since is None:
                self.meta.dormant_until = until
                return []
            if until <= since:
                return []
            try:
                got = self._core.dormant(since, until, DORMANT_AFTER)
            except _require().NotRepresentable:
                self._hand_over()
            else:
                self.meta.dormant_until = until
                return [("dormant", uid, inst, "", -1, -1) for uid, inst in got]
        assert self._py is not None
        return self._py.dormant_signals(until)


class NativeLiveAccountPartition:
    """`streams.live.LiveAccountPartition` with the compiled core."""

    def __init__(
        self,
        config: Config,
        partition: int,
        accounts: MutableMapping[str, AccountState] | None = None,
        meta: AccountMeta | None = None,
        daycalc: DayCalc | None = None,
        fold_limit: Instant | None = None,
    ) -> None:
        native = _require()
        self.config = config
        self.partition = partition
        self.meta = meta or AccountMeta()
        self.daycalc = daycalc or DayCalc(config.timezone)
        self._py: LiveAccountPartition | None = None
        self._core: Any = native.LiveAccounts(
            engine_settings(config, self.daycalc),
            self.daycalc,
            _restore_user,
            _restore_account,
            _from_atto,
        )
        self.engine: Any = _AccountEngine(self, config, self.daycalc)
        self.engine.fold_limit = fold_limit
        self._view = _View(self._core)
        try:
            if fold_limit is not None and type(fold_limit) is not int:
                raise native.NotRepresentable("a fold limit finer than nanoseconds")
            self._core.load(accounts if accounts is not None else {}, self.meta, fold_limit)
        except native.NotRepresentable:
            self._py = LiveAccountPartition(
                config, partition, accounts, self.meta, daycalc, fold_limit=fold_limit
            )
            self.engine = self._py.engine

    @classmethod
    def from_encoded(
        cls,
        config: Config,
        partition: int,
        encoded: dict[str, bytes],
        meta: AccountMeta | None = None,
        fold_limit: Instant | None = None,
    ) -> NativeLiveAccountPartition | None:
        """As `NativeLiveUserPartition.from_encoded`, from {customer: `encode_account` bytes}."""
        part = cls(config, partition, None, meta, None, fold_limit)
        if part._py is not None:
            return None
        try:
            loaded = part._core.load(encoded, part.meta, fold_limit, True)
        except _require().NotRepresentable:
            return None
        return part if loaded else None

    @property
    def handed_over(self) -> bool:
        return self._py is not None

    @property
    def accounts(self) -> MutableMapping[str, AccountState]:
        return self._py.accounts if self._py is not None else self._view

    @property
    def sweeps(self) -> int:
        return self._py.sweeps if self._py is not None else int(self._core.sweeps)

    def _hand_over(self) -> LiveAccountPartition:
        eng = self.engine
        py = LiveAccountPartition(
            self.config, self.partition, self._core.export(), self.meta, self.daycalc
        )
        py.engine.fold_limit = eng.fold_limit
        py.engine.watermark = self._core.watermark
        py.engine.fold = self._core.fold
        py.sweeps = int(self._core.sweeps)
        self._py = py
        self.engine = py.engine
        self._core = None
        return py

    def health_entries(
        self, customers: Iterable[str], t: Instant
    ) -> list[tuple[str, float, float, float, float, bool]] | None:
        """(customer, health, recency, frequency, sentiment, at risk) at T of those of
        `customers` that exist at T (agents/health.py `health_entry`), computed in the core;
        None when it cannot (T not held exactly, or the partition runs on Python)."""
        if self._py is not None or not (type(t) is int or type(t) is Fraction):
            return None
        rows: list[tuple[str, float, float, float, float, bool]] | None
        rows = self._core.health_entries(customers, t)
        return rows

    def apply_encoded(self, data: bytes, offset: int | None = None) -> set[str] | None:
        """`LiveAccountPartition.apply_encoded`: the core reads the facts message; None, with
        nothing applied, when it does not (a forget request, another encoding, a value it cannot
        hold, the partition moved to the Python engine)."""
        fold_limit = self.engine.fold_limit
        if self._py is not None or not (fold_limit is None or type(fold_limit) is int):
            return None
        dirty: set[str] | None = self._core.apply_encoded(data, offset, fold_limit)
        if dirty is not None:
            wm, swept, swept_at, msg_offset = self._core.meta()
            self.meta.watermark = wm
            _set_sweep_meta(self.meta, swept, swept_at, msg_offset)
        return dirty

    def apply(self, facts: list[Fact], offset: int | None = None) -> set[str]:
        """`LiveAccountPartition.apply`."""
        if self._py is None:
            fold_limit = self.engine.fold_limit
            dirty = None
            if fold_limit is None or type(fold_limit) is int:
                dirty = self._core.apply_facts(facts, offset, fold_limit)
            if dirty is not None:
                wm, swept, swept_at, msg_offset = self._core.meta()
                self.meta.watermark = wm
                _set_sweep_meta(self.meta, swept, swept_at, msg_offset)
                return dirty
            self._hand_over()
        assert self._py is not None
        return self._py.apply(facts, offset)
