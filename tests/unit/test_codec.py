"""streams/codec.py: every value the live worker stores or passes between its stages round-trips
exactly (types included), other format versions and pickles are refused with the migration step,
garbage never raises anything but CodecError (and never runs code), and a user state is small."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import pickle
import struct
from fractions import Fraction
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.codec import (
    FORMAT_VERSION,
    CodecError,
    ForgetRequest,
    PickledState,
    UnknownFormatVersion,
    decode_account,
    decode_account_meta,
    decode_facts_message,
    decode_id,
    decode_id_key,
    decode_meta,
    decode_tombstones,
    decode_user,
    encode_account,
    encode_account_meta,
    encode_facts,
    encode_forget,
    encode_id,
    encode_meta,
    encode_stored_user,
    encode_tombstones,
    encode_user,
    id_key,
)
from streams.config import Config
from streams.engine import AccountPartition, UserPartition
from streams.live import AccountMeta, LiveAccountPartition, LiveUserPartition, Meta
from streams.records import PRODUCT_EVENTS, REJECT_REASONS, SURVEY_ANSWERS
from streams.replay import Replayer
from streams.simulate import SimConfig, envelope_line, simulate
from streams.state import AccountState, UserState
from streams.timeutil import DAY, HOUR
from tests.unit.test_live import World, feed, make_input

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- exact comparison ----------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (tuple vs list, int vs Fraction vs float,
    None vs empty), floats bit for bit (-0.0, nan), dicts in the same order."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack(">d", a) == struct.pack(">d", b)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return len(a) == len(b) and all(
            same(ka, kb) and same(a[ka], b[kb]) for ka, kb in zip(a, b, strict=True)
        )
    return bool(a == b)


def same_slots(a: Any, b: Any) -> bool:
    assert type(a) is type(b)
    return all(same(getattr(a, n), getattr(b, n)) for n in type(a).__slots__)


# ---- strategies --------------------------------------------------------------------------------

BIG = 10**30  # the engine's fold sentinel is -10**30: beyond 64 bits
strs = st.one_of(
    st.text(max_size=8),
    st.sampled_from([PRODUCT_EVENTS, SURVEY_ANSWERS, "step:welcome", "", "\ud800", "a\udfffb"]),
    st.text(alphabet=st.sampled_from("ab\ud800\udfff\udc80\u00e9\U0001f600\x00"), max_size=6),
)
ints = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.integers(1_700_000_000 * 10**9, 1_900_000_000 * 10**9),
    st.sampled_from([-BIG, BIG, 2**64, -(2**63) - 1, 2**63, 0, -1]),
    st.integers(),
)
fractions = st.builds(
    Fraction, st.one_of(ints, st.integers(-(10**40), 10**40)), st.integers(2, 10**12)
)
instants = st.one_of(ints, fractions)
floats = st.one_of(st.floats(), st.sampled_from([-0.0, 0.0, math.inf, -math.inf, math.nan]))
opt_instants = st.one_of(st.none(), instants)


def opt(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), s)


def small_dict(k: st.SearchStrategy[Any], v: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.dictionaries(k, v, max_size=4)


def small_list(v: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(v, max_size=4)


topics = st.one_of(st.sampled_from([PRODUCT_EVENTS, SURVEY_ANSWERS]), strs)


@st.composite
def users(draw: st.DrawFn) -> UserState:
    u = UserState()
    u.offs = draw(opt(small_dict(st.tuples(topics, ints), ints)))
    u.ids = draw(small_dict(strs, instants))
    u.resp = draw(opt(small_dict(strs, instants)))
    u.facts = draw(opt(small_list(st.tuples(instants, ints))))
    u.answers = draw(opt(small_list(st.tuples(instants, ints, ints, opt(strs)))))
    u.signup = draw(opt_instants)
    u.ms = draw(opt(small_dict(strs, st.one_of(instants, small_list(instants)))))
    u.days = draw(opt(small_dict(ints, instants)))
    u.last = draw(opt_instants)
    u.lastp = draw(opt(small_list(instants)))
    u.features = draw(
        opt(small_dict(strs, st.tuples(opt_instants, opt(small_list(instants))).map(list)))
    )
    five = st.lists(opt_instants, min_size=5, max_size=5)
    u.sessions = draw(opt(small_dict(strs, five)))
    u.tickets = draw(opt(small_dict(strs, st.lists(opt_instants, min_size=2, max_size=2))))
    u.orders = draw(opt(small_dict(strs, instants)))
    u.returns = draw(opt(small_dict(strs, instants)))
    return u


pairs = st.tuples(instants, ints)


@st.composite
def accounts(draw: st.DrawFn) -> AccountState:
    a = AccountState(draw(instants))
    a.offs = draw(opt(small_dict(st.tuples(topics, ints, ints), ints)))
    a.days = draw(opt(small_dict(ints, instants)))
    a.last = draw(opt_instants)
    a.lastp = draw(opt(small_list(instants)))
    a.nps, a.csat, a.sub = draw(opt(pairs)), draw(opt(pairs)), draw(opt(pairs))
    a.npsp, a.csatp = draw(opt(small_list(pairs))), draw(opt(small_list(pairs)))
    a.subp = draw(opt(small_list(pairs)))
    a.orders = draw(opt(small_list(st.tuples(instants, st.one_of(floats, ints)))))
    return a


@st.composite
def metas(draw: st.DrawFn) -> Meta:
    m = Meta()
    m.event_offset, m.accepted, m.duplicates = draw(ints), draw(ints), draw(ints)
    m.dormant_until = draw(opt_instants)
    m.rejected = {r: draw(ints) for r in REJECT_REASONS}
    m.offs = draw(small_dict(st.tuples(topics, ints), ints))
    m.watermark = draw(opt(ints))
    m.swept, m.swept_at, m.msg_offset = draw(opt_instants), draw(ints), draw(ints)
    m.srcw = draw(small_dict(st.tuples(topics, ints), ints))
    return m


@st.composite
def account_metas(draw: st.DrawFn) -> AccountMeta:
    m = AccountMeta()
    m.watermark, m.event_offset = draw(opt(ints)), draw(ints)
    m.swept, m.swept_at, m.msg_offset = draw(opt_instants), draw(ints), draw(ints)
    return m


facts = st.tuples(
    strs, instants, ints, st.booleans(), ints, st.one_of(floats, ints), topics, ints, ints, ints
)


# ---- round trips -------------------------------------------------------------------------------


@FAST
@given(users())
def test_user_states_round_trip_exactly(u: UserState) -> None:
    data = encode_user(u)
    assert data[0] == FORMAT_VERSION
    back = decode_user(data)
    assert same_slots(back, u)
    assert encode_user(back) == data


@FAST
@given(accounts())
def test_customer_states_round_trip_exactly(a: AccountState) -> None:
    data = encode_account(a)
    back = decode_account(data)
    assert same_slots(back, a)
    assert encode_account(back) == data


@FAST
@given(metas(), account_metas())
def test_metas_round_trip_exactly(m: Meta, am: AccountMeta) -> None:
    assert same_slots(decode_meta(encode_meta(m)), m)
    assert same_slots(decode_account_meta(encode_account_meta(am)), am)


@FAST
@given(st.lists(facts, max_size=5), strs, strs)
def test_facts_and_forget_messages_round_trip_and_are_told_apart(
    fs: list[Any], customer: str, request_id: str
) -> None:
    assert same(decode_facts_message(encode_facts(fs)), fs)
    got = decode_facts_message(encode_forget(customer, request_id))
    assert type(got) is ForgetRequest and same(tuple(got), (customer, request_id))


@FAST
@given(
    small_dict(
        strs, small_dict(st.one_of(st.tuples(topics, ints), st.tuples(topics, ints, ints)), ints)
    )
)
def test_tombstones_round_trip_and_the_unversioned_ones_still_read(entries: Any) -> None:
    assert same(decode_tombstones(encode_tombstones(entries)), entries)
    # what agents/forget.py wrote before format versions, and `engagement rebuild` copies over
    try:
        legacy = msgspec.msgpack.encode(
            {h: [[list(k), o] for k, o in e.items()] for h, e in entries.items()}
        )
    except (OverflowError, UnicodeEncodeError):
        return  # agents/forget.py could not have written it
    assert same(decode_tombstones(legacy), entries)


def test_empty_and_none_stay_apart() -> None:
    u = UserState()
    u.resp, u.ms, u.offs, u.lastp = {}, {}, {}, []
    back = decode_user(encode_user(u))
    assert back.resp == {} and back.ms == {} and back.offs == {} and back.lastp == []
    assert decode_user(encode_user(UserState())).resp is None
    assert encode_user(UserState()) == bytes([FORMAT_VERSION]) + b"\x92\xc0\x80"  # offs, ids


# ---- states the engine makes ---------------------------------------------------------------------


def _live_states() -> tuple[list[UserState], list[AccountState], list[Any]]:
    n = 3
    envs, _ = make_input(n, seed=7)
    w = World(Config(), n, 0.0, 1)
    feed(w, envs, batch_size=17)
    w.run()
    us: list[UserState] = []
    accts: list[AccountState] = []
    metas_: list[Any] = []
    for p in range(n):
        part = w.load("u", p)
        assert isinstance(part, LiveUserPartition)
        us += part.users.values()
        metas_.append(part.meta)
        apart = w.load("a", p)
        assert isinstance(apart, LiveAccountPartition)
        accts += apart.accounts.values()
        metas_.append(apart.meta)
    return us, accts, metas_


def test_states_of_the_live_pipeline_round_trip_exactly() -> None:
    us, accts, metas_ = _live_states()
    assert len(us) > 50 and len(accts) > 20
    assert any(u.offs for u in us) and any(a.offs for a in accts)
    for u in us:
        assert same_slots(decode_user(encode_user(u)), u)
    for a in accts:
        assert same_slots(decode_account(encode_account(a)), a)
    for m in metas_:
        if isinstance(m, Meta):
            assert same_slots(decode_meta(encode_meta(m)), m)
        else:
            assert same_slots(decode_account_meta(encode_account_meta(m)), m)
    # with their source offsets (these users are busier than the simulate mix's), smaller
    # than pickled
    assert sum(map(len, map(encode_user, us))) < 0.8 * sum(len(pickle.dumps(u, 5)) for u in us)


def _simulate_mix_states() -> tuple[list[UserState], list[AccountState]]:
    """bench/state_size.py's measurement, at half its size: 40 days, a sweep at the end."""
    days = 40
    start = 1_795_168_800_000 - days * 86_400_000
    sim = SimConfig(start_ms=start, duration_s=days * 86400, users=10_000,
                    rate=100_000 / (days * 86400), seed=3)  # fmt: skip
    lines = [envelope_line(e) for e in simulate(sim)]
    r = Replayer(Config(), json.loads(lines[-1])["ts"] * 1_000_000)
    r.feed(lines)
    r.pipeline.sweep()
    return list(r.pipeline.users[0].users.values()), list(r.pipeline.accounts[0].accounts.values())


def test_simulate_mix_round_trips_and_a_user_is_at_most_200_bytes_without_dedupe_ids() -> None:
    us, accts = _simulate_mix_states()
    assert len(us) > 5000
    for u in us:
        assert same_slots(decode_user(encode_user(u)), u)
    for a in accts:
        assert same_slots(decode_account(encode_account(a)), a)
    stripped = []
    for u in us:
        c = copy.copy(u)
        c.ids, c.resp = {}, None
        stripped.append(c)
    codec = sum(len(encode_user(u)) for u in stripped) / len(stripped)
    pickled = sum(len(pickle.dumps(u, protocol=5)) for u in stripped) / len(stripped)
    assert codec <= 200, (codec, pickled)
    assert codec < pickled


# ---- the sweep's change detection is exact ------------------------------------------------------

T0 = 1_790_000_000 * 10**9
near = st.integers(T0 - 40 * DAY, T0 + 2 * DAY)
near_or_frac = st.one_of(near, near.map(lambda x: Fraction(x * 3 + 1, 3)))


@st.composite
def engine_users(draw: st.DrawFn) -> UserState:
    """User states as the engine keeps them (ms holds lists only until the signup is known)."""
    u = UserState()
    ts = near_or_frac
    u.ids = draw(small_dict(strs, ts))
    u.resp = draw(opt(st.dictionaries(strs, ts, min_size=1, max_size=3)))
    u.facts = draw(opt(st.lists(st.tuples(ts, st.integers(0, 5)), min_size=1, max_size=3)))
    u.answers = draw(
        opt(
            st.lists(
                st.tuples(ts, st.integers(0, 2), st.integers(0, 10), opt(strs)),
                min_size=1,
                max_size=3,
            )
        )
    )
    u.signup = draw(opt(ts))
    if u.signup is None:
        u.ms = draw(
            opt(st.dictionaries(strs, st.lists(ts, min_size=1, max_size=3), min_size=1, max_size=3))
        )
    else:
        u.ms = draw(opt(st.dictionaries(strs, ts, min_size=1, max_size=3)))
    u.days = draw(
        opt(st.dictionaries(st.integers(T0 // DAY - 40, T0 // DAY + 2), ts, min_size=1, max_size=4))
    )
    u.last = draw(opt(ts))
    u.lastp = draw(opt(st.lists(ts, min_size=1, max_size=3)))
    feature = st.tuples(opt(ts), opt(st.lists(ts, min_size=1, max_size=3))).map(list)
    u.features = draw(opt(st.dictionaries(strs, feature, min_size=1, max_size=3)))
    session = st.tuples(opt(ts), opt(ts), opt(ts), opt(ts), ts).map(list)
    u.sessions = draw(opt(st.dictionaries(strs, session, min_size=1, max_size=3)))
    ticket = st.tuples(opt(ts), opt(ts)).map(list)
    u.tickets = draw(opt(st.dictionaries(strs, ticket, min_size=1, max_size=3)))
    u.orders = draw(opt(st.dictionaries(strs, ts, min_size=1, max_size=3)))
    u.returns = draw(opt(st.dictionaries(strs, ts, min_size=1, max_size=3)))
    return u


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(engine_users(), near)
def test_expire_user_says_exactly_whether_it_changed_the_state(u: UserState, at: int) -> None:
    eng = UserPartition(Config())
    eng.fold = T0
    before = encode_user(u)
    changed, empty = eng.expire_user_changes(u, at)
    assert changed == (encode_user(u) != before)
    assert empty == u.is_empty()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), near)
def test_expire_account_says_exactly_whether_it_changed_the_state(data: Any, at: int) -> None:
    ts = near_or_frac
    pair = st.tuples(ts, st.integers(-10, 1))
    plist = opt(st.lists(pair, min_size=1, max_size=3))
    a = AccountState(data.draw(ts))
    a.days = data.draw(
        opt(st.dictionaries(st.integers(T0 // DAY - 40, T0 // DAY + 2), ts, min_size=1, max_size=4))
    )
    a.last, a.lastp = data.draw(opt(ts)), data.draw(opt(st.lists(ts, min_size=1, max_size=3)))
    a.nps, a.csat, a.sub = data.draw(opt(pair)), data.draw(opt(pair)), data.draw(opt(pair))
    a.npsp, a.csatp, a.subp = data.draw(plist), data.draw(plist), data.draw(plist)
    a.orders = data.draw(opt(st.lists(st.tuples(ts, floats), min_size=1, max_size=3)))
    eng = AccountPartition(Config())
    eng.fold = T0
    before = encode_account(a)
    assert eng.expire_account(a, at) == (encode_account(a) != before)


# ---- what is refused -----------------------------------------------------------------------------

DECODERS = (
    decode_id,
    decode_user,
    decode_account,
    decode_meta,
    decode_account_meta,
    decode_facts_message,
    decode_tombstones,
)


def _samples() -> list[bytes]:
    u = UserState()
    u.days = {1: 2}
    a = AccountState(5)
    return [
        encode_id(7, 0, 3),
        encode_user(u),
        encode_account(a),
        encode_meta(Meta()),
        encode_account_meta(AccountMeta()),
        encode_facts([("c", 1, 2, True, 0, 0.0, PRODUCT_EVENTS, 0, 1, 0)]),
        encode_tombstones({"h": {(PRODUCT_EVENTS, 0): 3}}),
    ]


@pytest.mark.parametrize("version", [0, FORMAT_VERSION + 1, 0x7F, 0xFF])
def test_another_format_version_is_refused_saying_which_and_what_to_do(version: int) -> None:
    for decode, data in zip(DECODERS, _samples(), strict=True):
        with pytest.raises(UnknownFormatVersion) as exc:
            decode(bytes([version]) + data[1:])
        assert exc.value.found == version
        msg = str(exc.value)
        assert "engagement rebuild" in msg and "Upgrading stored state: format versions" in msg
        assert f"reads format version {FORMAT_VERSION}" in msg
        if version > FORMAT_VERSION:
            assert f"format version {version}" in msg


def test_state_of_the_release_before_is_refused_naming_the_rebuild() -> None:
    """Format version 1 held a user's event ids inside its value; this release stores each
    under a key of its own and refuses version 1, naming the documented rebuild."""
    for decode, data in zip(DECODERS, _samples(), strict=True):
        if decode is decode_tombstones:  # the same layout: `engagement rebuild` keeps them
            assert decode(b"\x01" + data[1:]) == decode(data)
            continue
        with pytest.raises(UnknownFormatVersion) as exc:
            decode(b"\x01" + data[1:])
        msg = str(exc.value)
        assert "format version 1 (an older release)" in msg and "engagement rebuild" in msg


@pytest.mark.parametrize(
    ("user", "event"),
    [("u1", "e1"), ("", ""), ("u\x00", "\x00e"), ("ü-\ud800", "é\udfff"), ("u" * 300, "e" * 70)],
)
def test_an_event_ids_key_holds_any_user_and_event_id(user: str, event: str) -> None:
    k = id_key(user, event)
    assert k[:1] == b"\x02" and decode_id_key(k) == (user, event)
    # a user's ids sort together, apart from a user whose id starts with the first's
    assert id_key(user, "z") < id_key(user + "\x00", "") or len(user.encode()) > 255


def test_an_event_ids_value_round_trips_exact_instants() -> None:
    for ts in (
        0,
        -1,
        1_790_000_000_000_000_000,
        2**70,
        -(2**70),
        Fraction(1, 3),
        Fraction(-7, 10**12),
    ):
        assert decode_id(encode_id(ts, 3, 2**40)) == (ts, 3, 2**40)
        assert type(decode_id(encode_id(ts, 0, 0))[0]) is type(ts)
    for bad in (
        b"",
        b"\x02",
        encode_id(1, 2, 3)[:-1],
        bytes([FORMAT_VERSION]) + b"\x93\xa1x\x00\x00",
    ):
        with pytest.raises(CodecError):
            decode_id(bad)
    for key in (b"", b"\x01abc", b"\x02\x00\x00\x00\x05ab", b"\x02\x00\x00\x00\x01\xff"):
        with pytest.raises(CodecError):
            decode_id_key(key)


def test_a_stored_user_holds_no_event_ids() -> None:
    u = UserState()
    u.offs = {(PRODUCT_EVENTS, 0): 4}
    u.ids = {"e1": 5, "e2": Fraction(11, 2)}
    u.days = {1: 5}
    back = decode_user(encode_stored_user(u))
    assert back.ids == {} and back.offs == u.offs and back.days == u.days
    assert len(encode_stored_user(u)) < len(encode_user(u))


RAN: list[str] = []


def record_run(what: str) -> None:
    RAN.append(what)


class _Boom:
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (record_run, ("ran",))


def test_pickled_values_of_the_previous_release_are_refused_and_never_run() -> None:
    u = UserState()
    u.days = {1: 2}
    old = [
        pickle.dumps(u, protocol=pickle.HIGHEST_PROTOCOL),  # streams/live.py dumps, before
        pickle.dumps(AccountState(1), protocol=pickle.HIGHEST_PROTOCOL),
        pickle.dumps(Meta(), protocol=pickle.HIGHEST_PROTOCOL),
        pickle.dumps(AccountMeta(), protocol=pickle.HIGHEST_PROTOCOL),
        pickle.dumps([("c", 1, 2, True, 0, 0.0, "t", 0, 1, 0)], protocol=5),
        pickle.dumps(("\x00forget", "u", "r"), protocol=2),
    ]
    for data in old:
        for decode in DECODERS:
            with pytest.raises(PickledState, match="engagement rebuild"):
                decode(data)
    boom = pickle.dumps(_Boom(), protocol=5)
    assert pickle.loads(boom) is None and RAN == ["ran"]  # unpickled, it runs code
    for decode in DECODERS:
        with pytest.raises(PickledState):
            decode(boom)
    assert RAN == ["ran"]


def test_truncated_values_raise_codec_error() -> None:
    big = UserState()
    big.ids = {"e\ud800": Fraction(1, 3), "f": -BIG}
    big.answers = [(2**64, 1, 9, "tp")]
    samples = [*_samples(), encode_user(big), encode_forget("u", "r")]
    decoders = [*DECODERS, decode_user, decode_facts_message]
    for decode, data in zip(decoders, samples, strict=True):
        for i in range(len(data)):
            with pytest.raises(CodecError):
                decode(data[:i])


def test_bad_shapes_and_extension_types_raise_codec_error() -> None:
    v = bytes([FORMAT_VERSION])
    enc = msgspec.msgpack.encode
    Ext = msgspec.msgpack.Ext
    cases: list[tuple[Any, bytes]] = [
        (decode_user, v + enc([[0, 1], {}])),  # offs not in threes
        (decode_user, v + enc([[9, 1, 2], {}])),  # unknown topic code
        (decode_user, v + enc([[0, [1], 2], {}])),  # a list in a key
        (decode_user, v + enc([None, 5])),  # ids not a map
        (decode_user, v + enc([None, {}, {1: Ext(9, b"")}])),  # unknown extension type
        (decode_user, v + enc([None, {}, {1: Ext(2, b"garbage")}])),  # a bad Fraction
        (decode_user, v + enc([None, {}, {1: Ext(2, enc([1, 0]))}])),  # denominator 0
        (decode_user, v + enc([None, {}, {1: Ext(3, b"\xff")}])),  # not UTF-8 at all
        (decode_user, v + enc("a string")),
        (decode_user, v + b"\x91" * 100_000 + b"\xc0"),  # nested beyond any limit
        (decode_account, v + enc([])),  # no `first`
        (decode_meta, v + enc([1, 2])),
        (decode_facts_message, v + enc([2, []])),  # unknown kind
        (decode_facts_message, v + enc([0, [[1, 2]]])),  # a fact of 2 fields
        (decode_facts_message, v + enc([1, 5, "r"])),  # a customer that is not a str
        (decode_tombstones, v + enc([1])),
        (decode_tombstones, v + enc({"h": [[1, 2]]})),
        (decode_tombstones, v + enc({"h": [[[[1]], 2]]})),
        (decode_user, b"\x01\xc1"),
        (decode_user, "not bytes"),
    ]
    for decode, data in cases:
        with pytest.raises(CodecError):
            decode(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64), st.booleans())
def test_garbage_raises_codec_error_or_decodes(data: bytes, versioned: bool) -> None:
    if versioned:
        data = bytes([FORMAT_VERSION]) + data
    for decode in DECODERS:
        with contextlib.suppress(CodecError):
            decode(data)


def test_a_value_the_codec_cannot_hold_is_a_codec_error() -> None:
    u = UserState()
    u.last = object()  # type: ignore[assignment]
    with pytest.raises(CodecError):
        encode_user(u)
    m = Meta()
    object.__delattr__(m, "swept")
    with pytest.raises(CodecError, match="swept"):
        encode_meta(m)


def test_day_keys_and_nested_extension_types() -> None:
    u = UserState()
    u.days = {20000: Fraction(T0 * 10 + 1, 10), -5: 3 * HOUR}
    u.ms = {"\udc80": [Fraction(-BIG, 7), BIG]}
    back = decode_user(encode_user(u))
    assert same_slots(back, u)
    assert all(type(k) is int for k in back.days or {})


def test_micro_batches_carry_the_version_and_read_the_unversioned_ones() -> None:
    from streams import codec
    from streams.live import Batch

    recs = [(0, 1_700_000_000_000, b"u-1", b'{"a": 1}'), (5, -1, None, None), (2**40, 0, b"", b"")]
    data = codec.encode_batch(Batch("product-events", 3, recs))
    assert data[0] == codec.FORMAT_VERSION
    back = codec.decode_batch(data)
    assert (back.topic, back.partition, back.records) == ("product-events", 3, recs)
    # a micro-batch of the release before the version byte, in flight during an upgrade
    legacy = msgspec.msgpack.encode(("survey-answers", 1, recs))
    assert legacy[0] == 0x93
    old = codec.decode_batch(legacy)
    assert (old.topic, old.partition, old.records) == ("survey-answers", 1, recs)
    with pytest.raises(codec.UnknownFormatVersion, match="micro-batch"):
        codec.decode_batch(bytes([codec.FORMAT_VERSION + 1]) + data[1:])
    with pytest.raises(codec.PickledState):
        codec.decode_batch(b"\x80\x04garbage")
    for bad in (data[:-3], data[:1] + b"\xc1", data[:1] + msgspec.msgpack.encode([1, 2, []])):
        with pytest.raises(codec.CodecError):
            codec.decode_batch(bad)
