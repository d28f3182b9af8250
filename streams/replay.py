"""Replay: the engine over kcat-style JSON Lines (docs/metrics.md §4), in any number of partitions.

`Replayer` is the whole pipeline without Kafka: envelope -> decode/validate -> route to the user's
partition -> dedupe -> engine, with account facts routed to customer partitions. The live
pipeline runs the same `Pipeline.record` per Kafka record.
"""

from __future__ import annotations

import gc
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from streams.config import Config
from streams.engine import ACCEPTED, AccountPartition, EmitFact, Partial, UserPartition, finalize
from streams.errors import Reject
from streams.records import (
    _KNOWN_TYPES,
    _PLACEMENT_TYPES,
    _PROPS_NAMES,
    _SESSION_TYPES,
    BAD_JSON,
    FUTURE_NS,
    INPUT_TOPICS,
    MAX_DEPTH,
    MAX_VALUE_BYTES,
    PRODUCT_EVENTS,
    SOCIAL_ACTIONS,
    SURVEY_ANSWERS,
    ProductEvent,
    SurveyAnswer,
    _product_decoder,
    decode_product,
    decode_survey,
    time_reason,
)
from streams.timeutil import (
    _FRAC_SCALE,
    _HOUR_CACHE,
    _MMSS,
    END_MS,
    MIN_MS,
    MS,
    NS,
    DayCalc,
    Instant,
    parse_as_of,
    parse_rfc3339,
)


class Envelope(msgspec.Struct, gc=False):
    topic: str
    ts: int
    payload: str | None
    key: str | None = None
    partition: int | None = None
    offset: int | None = None


_envelope_decoder = msgspec.json.Decoder(Envelope)
_envelope_decode = _envelope_decoder.decode
_product_decode = _product_decoder.decode
# the hot path's view of the per-type checks of streams.records._check_product (the purchase's
# amount is left to it)
_SLOW_TYPES = frozenset(("purchase",))
_FAST_NAMES = {t: names for t, names in _PROPS_NAMES.items() if t not in _SLOW_TYPES}

# A rejected record as the dead-letter topic and `--rejects` see it:
# (reason, detail, topic, partition, offset, key, record ts, value)
RejectSink = Callable[
    [str, str, "str | None", "int | None", "int | None", Any, "int | None", Any], None
]


def stable_hash(s: str) -> int:
    return zlib.crc32(s.encode("utf-8", "surrogatepass"))


class Pipeline:
    """Decode, validate and route records into N user partitions and N account partitions."""

    def __init__(
        self,
        config: Config,
        partitions: int = 1,
        fold_limit: Instant | None = None,
        on_reject: RejectSink | None = None,
    ) -> None:
        self.config = config
        self.n = partitions
        dc = DayCalc(config.timezone)
        self.accounts = [
            AccountPartition(config, fold_limit=fold_limit, daycalc=dc) for _ in range(partitions)
        ]
        emit: EmitFact
        if partitions == 1:
            emit = self.accounts[0].fact
        else:
            accts = self.accounts

            def emit_routed(c: str, ts: Instant, rts: int, act: bool, kind: int, v: float) -> None:
                accts[stable_hash(c) % partitions].fact(c, ts, rts, act, kind, v)

            emit = emit_routed

        self.users = [
            UserPartition(config, emit=emit, fold_limit=fold_limit, daycalc=dc)
            for _ in range(partitions)
        ]
        self.on_reject = on_reject
        self.lateness = config.lateness_ns
        self.skipped = 0
        self.redelivered = 0

    def _partition_of(self, key: str | None) -> UserPartition:
        if self.n == 1 or key is None:
            return self.users[0]
        return self.users[stable_hash(key) % self.n]

    def reject(
        self,
        exc: Reject,
        key: str | None,
        topic: str | None,
        partition: int | None,
        offset: int | None,
        record_ts: int | None,
        value: Any,
    ) -> None:
        up = self._partition_of(key)
        if record_ts is not None:
            up.see_record_ts(record_ts * MS)
        up.count_reject(exc.reason)
        if self.on_reject is not None:
            self.on_reject(exc.reason, exc.detail, topic, partition, offset, key, record_ts, value)

    def record(
        self,
        topic: str,
        key: str | None,
        value: bytes | str,
        record_ts: int,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        """One Kafka record of an input topic (others are skipped)."""
        try:
            decided = self.decide(topic, value, record_ts)
        except Reject as exc:
            self.reject(exc, key, topic, partition, offset, record_ts, value)
            return
        if decided is None:
            self.skipped += 1
            return
        rec, inst = decided
        uid = rec.user_id
        up = self.users[0] if self.n == 1 else self.users[stable_hash(uid) % self.n]
        up.see_record_ts(record_ts * MS)
        if type(rec) is ProductEvent:
            outcome = up.product(rec, inst)
        else:
            assert type(rec) is SurveyAnswer
            outcome = up.survey(rec, inst)
        if outcome == ACCEPTED:
            up.accepted += 1
        else:
            up.duplicates += 1

    def decide(
        self, topic: str, value: bytes | str, record_ts: int
    ) -> tuple[ProductEvent | SurveyAnswer, Instant] | None:
        """Decode, validate and time-check one record (steps 1-5 of docs/metrics.md §1): the
        record and its instant, None for a topic that is not an input; raises Reject. Pure: the
        state is not touched (the compiled replay core asks this too, streams/native.py)."""
        rec: ProductEvent | SurveyAnswer
        if topic == PRODUCT_EVENTS:
            rec, inst = decode_product(value)
        elif topic == SURVEY_ANSWERS:
            rec, inst = decode_survey(value)
        else:
            return None
        reason = time_reason(inst, record_ts, self.lateness)
        if reason is not None:
            raise Reject(reason)
        return rec, inst

    def product_value(
        self,
        key: str | None,
        value: str,
        record_ts: int,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        """`record(PRODUCT_EVENTS, ...)` with the common case decoded, validated and applied
        inline (the replay hot path). Whatever is not plainly valid (long, not ASCII, with a
        backslash or many brackets, a type seen for the first time, a purchase, any reason to
        reject) goes to `record`, which decides it: the outcome is the same. The checks mirror
        streams.records._check_product."""
        if (
            len(value) * 4 > MAX_VALUE_BYTES
            or "\\" in value  # an escape: "\\uD800" must be checked; others are rare
            or not value.isascii()
            or (
                (value.count("{") > 2 or "[" in value)
                and value.count("{") + value.count("[") >= MAX_DEPTH
            )
        ):
            return self.record(PRODUCT_EVENTS, key, value, record_ts, partition, offset)
        try:
            ev = _product_decode(value)
        except (msgspec.DecodeError, UnicodeError):
            return self.record(PRODUCT_EVENTS, key, value, record_ts, partition, offset)
        t = ev.type
        uid = ev.user_id
        eid = ev.event_id
        acct = ev.account_id
        sid = ev.session_id
        if not (
            t in _KNOWN_TYPES
            and 0 < len(eid) <= 128
            and 0 < len(uid) <= 128
            and (acct is None or 0 < len(acct) <= 128)
            and (sid is None or 0 < len(sid) <= 128)
        ):
            return self.record(PRODUCT_EVENTS, key, value, record_ts, partition, offset)
        # the props each type needs (streams.records._check_product); the rare types with
        # more to check (purchase: the amount) go to `record`
        props = ev.props
        if t in _SESSION_TYPES:
            ok = sid is not None
        else:
            names = _FAST_NAMES.get(t)
            if names is not None:
                ok = props is not None
                if ok:
                    assert props is not None
                    for n in names:
                        v = props.get(n)
                        if type(v) is not str or not 1 <= len(v) <= 128:
                            ok = False
            elif t in _PLACEMENT_TYPES:
                ok = True
                if props is not None:
                    v = props.get("placement")
                    ok = v is None or (type(v) is str and 1 <= len(v) <= 128)
            elif t == "social_interaction":
                ok = props is not None and props.get("action") in SOCIAL_ACTIONS
            else:
                ok = t not in _SLOW_TYPES
        if not ok:
            return self.record(PRODUCT_EVENTS, key, value, record_ts, partition, offset)
        ts = ev.ts
        inst: Instant | None = None
        if isinstance(ts, int):
            if MIN_MS <= ts < END_MS:
                inst = ts * MS
        else:
            # streams.timeutil.parse_rfc3339's fast path, inline; parse_rfc3339 otherwise
            nts = len(ts)
            if nts >= 20 and ts[-1] == "Z" and ts[13] == ":":
                hour = _HOUR_CACHE.get(ts[:13])
                if hour is not None:
                    mmss = _MMSS.get(ts[14:19])
                    if mmss is not None:
                        if nts == 20:
                            inst = (hour + mmss) * NS
                        else:
                            frac = ts[20:-1]
                            if ts[19] == "." and len(frac) <= 9 and frac.isdigit():
                                inst = (hour + mmss) * NS + int(frac) * _FRAC_SCALE[len(frac)]
            if inst is None:
                inst = parse_rfc3339(ts)
        rts = record_ts * MS
        if inst is None or inst > rts + FUTURE_NS or inst < rts - self.lateness:
            return self.record(PRODUCT_EVENTS, key, value, record_ts, partition, offset)
        up = self.users[0] if self.n == 1 else self.users[stable_hash(uid) % self.n]
        w = up.watermark
        if w is None or rts > w:  # up.see_record_ts(rts), inline
            up.watermark = rts
            f: Instant = rts - up.margin
            lim = up.fold_limit
            if lim is not None and lim < f:
                f = lim
            if f > up.fold:
                up.fold = f
        if up.product(ev, inst) == ACCEPTED:
            up.accepted += 1
        else:
            up.duplicates += 1

    def maybe_sweep(self) -> None:
        for p in self.users:
            p.maybe_sweep()
        for a in self.accounts:
            a.maybe_sweep()

    def sweep(self) -> None:
        for p in self.users:
            p.sweep()
        for a in self.accounts:
            a.sweep()

    def snapshot(self, as_of: Instant) -> dict[str, Any]:
        total = Partial()
        for p in self.users:
            total.merge(p.partial(as_of))
        for a in self.accounts:
            total.merge(a.partial(as_of))
        return finalize(total, as_of, self.config)


class Replayer:
    """Reads replay lines (bytes) into a Pipeline, applying the envelope and redelivery rules."""

    def __init__(
        self,
        config: Config,
        as_of: Instant,
        partitions: int = 1,
        on_reject: RejectSink | None = None,
        sweep_every: int = 200_000,  # lines between expiry checks; 0: never
    ) -> None:
        self.as_of = as_of
        self.pipeline = Pipeline(config, partitions, fold_limit=as_of, on_reject=on_reject)
        self.offsets: dict[tuple[str, int], int] = {}
        self.lines = 0
        self.sweep_every = sweep_every

    def line(self, raw: bytes) -> None:
        """One line of a replay file; product events take the pipeline's hot path."""
        self.lines += 1
        if self.sweep_every and self.lines % self.sweep_every == 0:
            self.pipeline.maybe_sweep()
        env: Envelope | None
        try:
            env = _envelope_decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            env = self._strict_envelope(raw)
            if env is None:
                return
        topic = env.topic
        part = env.partition
        off = env.offset
        if part is not None and off is not None:
            tp = (topic, part)
            offsets = self.offsets
            prev = offsets.get(tp)
            if prev is not None and off <= prev:
                self.pipeline.redelivered += 1
                return
            offsets[tp] = off
        payload = env.payload
        if topic == PRODUCT_EVENTS and payload is not None:
            self.pipeline.product_value(env.key, payload, env.ts, part, off)
        else:
            self._envelope(env)

    def _envelope(self, env: Envelope) -> None:
        """A new record (redeliveries are filtered out)."""
        if env.topic not in INPUT_TOPICS:
            self.pipeline.skipped += 1
            return
        if env.payload is None:
            self.pipeline.reject(
                Reject(BAD_JSON, "empty value (null payload)"),
                env.key,
                env.topic,
                env.partition,
                env.offset,
                env.ts,
                None,
            )
            return
        self.pipeline.record(env.topic, env.key, env.payload, env.ts, env.partition, env.offset)

    def _strict_envelope(self, raw: bytes) -> Envelope | None:
        """The slow path: blank lines, lone surrogates in payloads, and invalid envelopes."""
        if not raw.strip():
            return None
        env = strict_envelope(raw)
        if env is None:
            self.pipeline.reject(Reject(BAD_JSON, BAD_ENVELOPE), None, None, None, None, None, raw)
        return env

    def feed(self, lines: Iterable[bytes]) -> None:
        """`line` for each line, with the garbage collector paused (see `gc_paused`)."""
        line = self.line
        with gc_paused():
            for raw in lines:
                line(raw)

    def snapshot(self) -> dict[str, Any]:
        return self.pipeline.snapshot(self.as_of)


BAD_ENVELOPE = "not a valid replay envelope"


def decode_envelope(raw: bytes) -> Envelope | None:
    """A replay line's envelope: the fast decoder, else `strict_envelope`; None when the line is
    not an envelope (blank lines included: the caller tells them apart)."""
    try:
        return _envelope_decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return strict_envelope(raw)


def strict_envelope(raw: bytes) -> Envelope | None:
    """The envelope by the stdlib parser (lone surrogates in payloads are fine), or None."""
    import json

    try:
        d = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if type(d) is dict:
        try:
            return msgspec.convert(d, Envelope, strict=True)
        except msgspec.ValidationError:
            return None
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(name)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while replaying. The engine's state is acyclic (dicts,
    lists and tuples of ints and strings, freed by reference counting), but each container it
    allocates counts towards the next collection, and the full collections walk every live
    object: ~25% of a replay's time on a 300,000-record file. Garbage cycles made meanwhile (none
    are expected) are collected once the collector is back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def replay_lines(
    lines: Iterable[bytes], config: Config, as_of: str, partitions: int = 1
) -> dict[str, Any]:
    """The snapshot as of `as_of` of replay-file lines (the engine API used by tests/bench)."""
    r = Replayer(config, parse_as_of(as_of), partitions)
    r.feed(lines)
    return r.snapshot()
