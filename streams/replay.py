"""Replay: the engine over kcat-style JSON Lines (docs/metrics.md §4), in any number of partitions.

`Replayer` is the whole pipeline without Kafka: envelope -> decode/validate -> route to the user's
partition -> dedupe -> engine, with account facts routed to customer partitions. The live
pipeline runs the same `Pipeline.record` per Kafka record.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from streams.config import Config
from streams.engine import ACCEPTED, AccountPartition, EmitFact, Partial, UserPartition, finalize
from streams.errors import Reject
from streams.records import (
    BAD_JSON,
    INPUT_TOPICS,
    PRODUCT_EVENTS,
    SURVEY_ANSWERS,
    decode_product,
    decode_survey,
    time_reason,
)
from streams.timeutil import MS, DayCalc, Instant, parse_as_of


class Envelope(msgspec.Struct, gc=False):
    topic: str
    ts: int
    payload: str | None
    key: str | None = None
    partition: int | None = None
    offset: int | None = None


_envelope_decoder = msgspec.json.Decoder(Envelope)

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
            if topic == PRODUCT_EVENTS:
                ev, inst = decode_product(value)
                uid = ev.user_id
            elif topic == SURVEY_ANSWERS:
                ans, inst = decode_survey(value)
                uid = ans.user_id
            else:
                self.skipped += 1
                return
            reason = time_reason(inst, record_ts, self.lateness)
            if reason is not None:
                raise Reject(reason)
        except Reject as exc:
            self.reject(exc, key, topic, partition, offset, record_ts, value)
            return
        up = self.users[0] if self.n == 1 else self.users[stable_hash(uid) % self.n]
        up.see_record_ts(record_ts * MS)
        outcome = up.product(ev, inst) if topic == PRODUCT_EVENTS else up.survey(ans, inst)
        if outcome == ACCEPTED:
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
        self.lines += 1
        if self.sweep_every and self.lines % self.sweep_every == 0:
            self.pipeline.maybe_sweep()
        env: Envelope | None
        try:
            env = _envelope_decoder.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            env = self._strict_envelope(raw)
            if env is None:
                return
        if env.partition is not None and env.offset is not None:
            tp = (env.topic, env.partition)
            prev = self.offsets.get(tp)
            if prev is not None and env.offset <= prev:
                self.pipeline.redelivered += 1
                return
            self.offsets[tp] = env.offset
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
        import json

        if not raw.strip():
            return None
        try:
            d = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            d = None
        env: Envelope | None = None
        if type(d) is dict:
            try:
                env = msgspec.convert(d, Envelope, strict=True)
            except msgspec.ValidationError:
                env = None
        if env is None:
            self.pipeline.reject(
                Reject(BAD_JSON, "not a valid replay envelope"), None, None, None, None, None, raw
            )
        return env

    def feed(self, lines: Iterable[bytes]) -> None:
        line = self.line
        for raw in lines:
            line(raw)

    def snapshot(self) -> dict[str, Any]:
        return self.pipeline.snapshot(self.as_of)


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def replay_lines(
    lines: Iterable[bytes], config: Config, as_of: str, partitions: int = 1
) -> dict[str, Any]:
    """The snapshot as of `as_of` of replay-file lines (the engine API used by tests/bench)."""
    r = Replayer(config, parse_as_of(as_of), partitions)
    r.feed(lines)
    return r.snapshot()
