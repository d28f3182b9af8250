"""The compiled replay core (the Rust extension `engagement_native`, built from native/).

`NativeReplayer` is `streams.replay.Replayer` with its per-record work in Rust: the envelope,
the redelivery rule, decoding and validating plainly valid records, deduplication, and the
state machines of `UserPartition.product` / `.survey`, `AccountPartition.fact` and expiry. It
gives the same snapshot and the same rejected records as the Python engine on every input:

- Python stays the one definition of validity. A record the compiled hot path cannot decide
  with certainty (escapes, non-ASCII text, unknown fields, custom event types, anything invalid)
  goes to `_Bridge`, which runs `Pipeline.decide` (and reports a rejection to the sink); the
  decoded record is then applied in Rust.
- Python stays the one definition of every metric: `snapshot()` moves the state into a
  `Replayer` (`to_replayer`) and runs its `snapshot()` (`UserPartition.partial`, `finalize`).
- An input whose value the compiled core cannot hold exactly (an instant with more than nine
  fractional digits, an exact Fraction in Python) makes it hand the whole state over to a
  `Replayer`, which processes that line and everything after it (`handed_over`).

The module is optional: without it (no Rust toolchain when installing), `make_replayer` returns
the Python `Replayer` and `engagement replay` says so on stderr.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from streams.config import Config
from streams.engine import UserPartition
from streams.errors import Reject
from streams.records import BAD_JSON, INPUT_TOPICS, REJECT_REASONS, ProductEvent, SurveyAnswer
from streams.recordspec import KNOWN_TYPES, SOCIAL_ACTIONS
from streams.replay import (
    BAD_ENVELOPE,
    Pipeline,
    RejectSink,
    Replayer,
    decode_envelope,
    gc_paused,
    stable_hash,
)
from streams.state import (
    _ACCOUNT_SLOTS,
    _USER_SLOTS,
    SURVEY_CODES,
    _restore_account,
    _restore_user,
)
from streams.timeutil import END_MS, MIN_MS, DayCalc, Instant, parse_as_of

ENGINES = ("auto", "native", "python")


def contract_problems(mod: Any) -> list[str]:
    """What the compiled module `mod` restates by hand from streams/ (state codes, slot orders,
    reject reasons, limits, topic names, streams/codec.py's format version, topic codes and
    extension types; exported by native/src/lib.rs) and that differs from the Python
    definitions (empty when they all agree)."""
    from streams import codec, engine, live, state
    from streams import records as rec

    expected: dict[str, Any] = {
        name: getattr(state, name)
        for name in (
            "F_CLICK", "F_IMPRESSION", "F_CANCEL", "F_SOCIAL", "SV_CSAT", "SV_NPS", "SV_CES",
            "K_NONE", "K_NPS", "K_CSAT", "K_SUB_START", "K_SUB_CANCEL", "K_ORDER",
        )
    }  # fmt: skip
    expected.update(
        REJECT_REASONS=REJECT_REASONS,
        USER_SLOTS=_USER_SLOTS,
        ACCOUNT_SLOTS=_ACCOUNT_SLOTS,
        PRODUCT_EVENTS=rec.PRODUCT_EVENTS,
        SURVEY_ANSWERS=rec.SURVEY_ANSWERS,
        MAX_VALUE_BYTES=rec.MAX_VALUE_BYTES,
        FUTURE_NS=rec.FUTURE_NS,
        INIT_FOLD_NS=engine.UserPartition(Config()).fold,
        SWEEP_EVERY_NS=live.SWEEP_EVERY,
        MIN_MS=MIN_MS,
        END_MS=END_MS,
        # native/src/codec.rs writes streams/codec.py's encoding of users and customers
        CODEC_FORMAT_VERSION=codec.FORMAT_VERSION,
        CODEC_TOPICS=codec._TOPICS,
        CODEC_EXT_BIG_INT=codec.EXT_BIG_INT,
        CODEC_EXT_FRACTION=codec.EXT_FRACTION,
        CODEC_ID_PREFIX=codec.ID_PREFIX[0],
        CODEC_ENTITY_PREFIX=codec.ENTITY_PREFIX[0],
    )
    if [state.SURVEY_CODES[s] for s in ("csat", "nps", "ces")] != [
        state.SV_CSAT,
        state.SV_NPS,
        state.SV_CES,
    ] or len(state.SURVEY_CODES) != 3:
        return [f"SURVEY_CODES: {state.SURVEY_CODES!r} is not csat, nps, ces -> SV_*"]
    problems = []
    for name, want in expected.items():
        got = getattr(mod, name, None)
        if got != want:
            problems.append(f"{name}: {got!r} in the compiled core, {want!r} in streams")
    return problems


def _load_core() -> tuple[Any, str | None]:
    """The compiled module, or None and why not: not installed, or restating codes that
    differ from the Python definitions (an ImportError here, so every caller falls back to the
    Python engine)."""
    try:
        import engagement_native as mod

        problems = contract_problems(mod)
        if problems:
            raise ImportError(
                "engagement_native disagrees with streams (rebuild native/): " + "; ".join(problems)
            )
    except ImportError as exc:  # pragma: no cover - depends on the install
        return None, str(exc)
    return mod, None


_native, UNAVAILABLE = _load_core()


# the props value each type's state machine reads (UserPartition.product)
_PROP = {
    "feature_used": "feature",
    "onboarding_step": "step",
    "social_interaction": "action",
    "purchase": "order_id",
    "return": "order_id",
    "ticket_opened": "ticket_id",
    "ticket_resolved": "ticket_id",
}

# the compiled core's instants are attoseconds (nanoseconds * _UNIT): exact for timestamps of up
# to 18 fractional digits
_UNIT = 10**9
_SKIPPED = (0,)
_BLANK = (0,)
_HANDOVER = (9,)


def _from_atto(atto: int) -> Instant:
    """An instant of the compiled core that is not whole nanoseconds, as Python holds it."""
    return Fraction(atto, _UNIT)


def check_contract() -> list[str]:
    """The restated codes of the compiled core that differ from Python's (empty when they all
    agree, or when the module is not installed: see UNAVAILABLE)."""
    return [] if _native is None else contract_problems(_native)


def available() -> bool:
    """True when the compiled module is installed and agrees with the Python engine."""
    return _native is not None


class _Bridge:
    """What the compiled core asks Python: envelopes and records it cannot decide itself."""

    __slots__ = ("decider", "on_reject")

    def __init__(self, decider: Pipeline, on_reject: RejectSink | None) -> None:
        self.decider = decider
        self.on_reject = on_reject

    def envelope(self, raw: bytes) -> tuple[Any, ...]:
        """(0,) blank line; (1, reason, key, ts) rejected; (2, topic, ts, payload, key,
        partition, offset) an envelope (`Replayer.line`'s decoding)."""
        env = decode_envelope(raw)
        if env is None:
            if not raw.strip():
                return _BLANK
            if self.on_reject is not None:
                self.on_reject(BAD_JSON, BAD_ENVELOPE, None, None, None, None, None, raw)
            return (1, BAD_JSON, None, None)
        return (2, env.topic, env.ts, env.payload, env.key, env.partition, env.offset)

    def record(
        self,
        topic: str,
        key: str | None,
        payload: str | None,
        ts: int,
        partition: int | None,
        offset: int | None,
    ) -> tuple[Any, ...]:
        """A new record (`Replayer._envelope` / `Pipeline.record` without the state): (0,)
        skipped; (1, reason, stable hash of the key or None, ts) rejected (reported to the
        sink); (2, user, event id, type,
        account, session, prop, amount, instant) a product event; (3, user, response id, survey
        code, score, account, touchpoint, instant) a survey answer, instants in attoseconds;
        (9,) hand over (an instant finer than attoseconds)."""
        try:
            if topic not in INPUT_TOPICS:
                return _SKIPPED
            if payload is None:
                raise Reject(BAD_JSON, "empty value (null payload)")
            decided = self.decider.decide(topic, payload, ts)
        except Reject as exc:
            if self.on_reject is not None:
                self.on_reject(exc.reason, exc.detail, topic, partition, offset, key, ts, payload)
            return (1, exc.reason, None if key is None else stable_hash(key), ts)
        if decided is None:
            return _SKIPPED
        return _decision(*decided)

    def live(self, topic: str, value: Any, record_ts: int) -> tuple[Any, ...]:
        """A live record (`LiveUserPartition.apply`'s decoding, for the compiled live core):
        (1, reason, None, None, detail) rejected (not reported: the caller makes the dead
        letter); else as `record`."""
        try:
            decided = self.decider.decide(topic, value, record_ts)
        except Reject as exc:
            return (1, exc.reason, None, None, exc.detail)
        if decided is None:
            return _SKIPPED
        return _decision(*decided)


def _decision(rec: ProductEvent | SurveyAnswer, inst: Instant) -> tuple[Any, ...]:
    """A decoded record as the compiled core reads it (`_Bridge.record`)."""
    if type(inst) is int:
        inst = inst * _UNIT
    else:  # an exact Fraction of nanoseconds: whole attoseconds, or a hand-over
        atto = inst * _UNIT
        if atto.denominator != 1:
            return _HANDOVER
        inst = int(atto)
    if isinstance(rec, ProductEvent):
        t = rec.type
        name = _PROP.get(t)
        props = rec.props
        prop = props[name] if name is not None and props is not None else None
        amount = props["amount"] if t == "purchase" and props is not None else 0.0
        return (
            2,
            rec.user_id,
            rec.event_id,
            t,
            rec.account_id,
            rec.session_id,
            prop,
            amount,
            inst,
        )
    return (
        3,
        rec.user_id,
        rec.response_id,
        SURVEY_CODES[rec.survey],
        rec.score,
        rec.account_id,
        rec.touchpoint,
        inst,
    )


def engine_settings(config: Config, daycalc: DayCalc) -> dict[str, Any]:
    """What the compiled core reads of the configuration (streams.engine.UserPartition's
    attributes), for `Engine`, `LiveUsers` and `LiveAccounts`."""
    ref = UserPartition(config, daycalc=daycalc)
    return {
        "lateness_ns": ref.lateness,
        "margin_ns": ref.margin,
        "inactive_events": set(ref.inactive),
        "milestones": set(ref.milestones),
        "known_types": set(KNOWN_TYPES),
        "funnel_steps": list(ref.steps),
        "activation_events": list(config.activation_events),
        "value_event": config.value_event,
        "social_actions": list(SOCIAL_ACTIONS),
        "fixed_offset_ns": daycalc._fixed,
    }


def _split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines (each with its b"\\n") and the trailing partial line."""
    lines = data.split(b"\n")
    tail = lines.pop()
    return [x + b"\n" for x in lines], tail


class NativeReplayer:
    """`Replayer` with the compiled core (same constructor, same results)."""

    def __init__(
        self,
        config: Config,
        as_of: Instant,
        partitions: int = 1,
        on_reject: RejectSink | None = None,
        sweep_every: int = 200_000,
    ) -> None:
        if _native is None:
            raise RuntimeError(
                "the compiled replay core (engagement_native) is not usable: "
                f"{UNAVAILABLE}; `make install` builds it (it needs cargo); or use the Python "
                "engine"
            )
        if type(as_of) is not int:
            raise ValueError("the compiled replay core needs an as-of in whole nanoseconds")
        self.config = config
        self.as_of = as_of
        self.partitions = partitions
        self.on_reject = on_reject
        self.sweep_every = sweep_every
        decider = Pipeline(config, 1, fold_limit=as_of)
        daycalc = DayCalc(config.timezone)
        settings = engine_settings(config, daycalc)
        settings.update(partitions=partitions, fold_limit=as_of, sweep_every=sweep_every)
        self._engine: Any = _native.Engine(
            settings,
            daycalc,
            _Bridge(decider, on_reject),
            _restore_user,
            _restore_account,
            _from_atto,
        )
        self._py: Replayer | None = None
        self._carry = b""

    # ---- input -----------------------------------------------------------------------------

    @property
    def handed_over(self) -> bool:
        return self._py is not None

    @property
    def lines(self) -> int:
        return self._py.lines if self._py is not None else int(self._engine.lines)

    def line(self, raw: bytes) -> None:
        if self._py is None:
            if self._engine.line(raw):
                return
            self._hand_over()
        assert self._py is not None
        self._py.line(raw)

    def feed(self, lines: Iterable[bytes]) -> None:
        line = self.line
        for raw in lines:
            line(raw)

    def feed_bytes(self, data: bytes) -> None:
        """A chunk of a replay file: lines split on b"\\n", a trailing partial line kept."""
        if self._py is None:
            if self._engine.feed(data):
                return
            data = self._hand_over()
        assert self._py is not None
        lines, self._carry = _split_lines(self._carry + data)
        line = self._py.line
        with gc_paused():
            for raw in lines:
                line(raw)

    def finish(self) -> None:
        """The end of the input: a partial last line (no b"\\n") is processed."""
        if self._py is None:
            if self._engine.finish():
                return
            rest = self._hand_over()
            assert self._py is not None
            self._py.line(rest)
            return
        if self._carry:
            carry, self._carry = self._carry, b""
            self._py.line(carry)

    def _hand_over(self) -> bytes:
        """Move the state to a Python Replayer; returns the input the core did not process."""
        rest: bytes = self._engine.take_rest()
        self._py = self._export(with_ids=True)
        self._engine = None
        return rest

    # ---- output ----------------------------------------------------------------------------

    def sizes(self) -> tuple[int, int]:
        """(tracked users, tracked customers)."""
        if self._py is not None:
            p = self._py.pipeline
            return sum(len(u.users) for u in p.users), sum(len(a.accounts) for a in p.accounts)
        users, customers = self._engine.sizes()
        return int(users), int(customers)

    def to_replayer(self) -> Replayer:
        """A pure-Python Replayer holding the whole state (it can go on with the input)."""
        if self._py is not None:
            return self._py
        self.finish()
        if self._py is not None:
            return self._py
        return self._export(with_ids=True)

    def snapshot(self) -> dict[str, Any]:
        self.finish()
        if self._py is not None:
            return self._py.snapshot()
        return self._export(with_ids=False).snapshot()

    def _export(self, with_ids: bool) -> Replayer:
        with gc_paused():
            st = self._engine.export(with_ids)
            r = Replayer(self.config, self.as_of, self.partitions, self.on_reject, self.sweep_every)
            p = r.pipeline
            for up, (users, acc, dup, rej, wm, fold, last) in zip(
                p.users, st["users"], strict=True
            ):
                up.users = users
                up.accepted = acc
                up.duplicates = dup
                up.rejected = dict(zip(REJECT_REASONS, rej, strict=True))
                up.watermark = wm
                up.fold = fold
                up._last_sweep = last
            for ap, (accounts, wm, fold, last) in zip(p.accounts, st["accounts"], strict=True):
                ap.accounts = accounts
                ap.watermark = wm
                ap.fold = fold
                ap._last_sweep = last
            r.offsets = {(t, part): off for t, part, off in st["offsets"]}
            r.lines = st["lines"]
            p.skipped = st["skipped"]
            p.redelivered = st["redelivered"]
        return r


def make_replayer(
    config: Config,
    as_of: Instant,
    partitions: int = 1,
    on_reject: RejectSink | None = None,
    engine: str = "auto",
    sweep_every: int = 200_000,
) -> Replayer | NativeReplayer:
    """The replayer for `engine`: "native" (the compiled core; RuntimeError when it is not
    installed), "python", or "auto" (native when installed and the as-of is whole nanoseconds)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}")
    if engine == "native" or (engine == "auto" and available() and type(as_of) is int):
        return NativeReplayer(config, as_of, partitions, on_reject, sweep_every)
    return Replayer(config, as_of, partitions, on_reject, sweep_every)


def replay_lines(
    lines: Iterable[bytes], config: Config, as_of: str, partitions: int = 1
) -> dict[str, Any]:
    """`streams.replay.replay_lines` with the compiled core."""
    r = NativeReplayer(config, parse_as_of(as_of), partitions)
    r.feed(lines)
    return r.snapshot()
