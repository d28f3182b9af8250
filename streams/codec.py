"""The one codec for what the live worker stores (its tables) and passes between its stages (the
internal topic `<app>-account-facts`): versioned msgpack, never pickle.

Every encoded value is one format-version byte (`FORMAT_VERSION`) followed by one msgpack value
(docs/architecture.md, "Stored values: the codec"):

- a user state (`encode_user`): a positional array, in this order, trailing `None`s left out:
  offs, ids, days, last, signup, ms, features, answers, sessions, orders, facts, resp, tickets,
  returns, lastp (the slots of streams/state.py `UserState`). `offs` is written flat,
  `[topic, partition, offset, ...]`, with the two input topics as 0 and 1. The worker's table
  stores a user without its event ids (`encode_stored_user`: the ids slot is an empty map);
- each event id a user has seen, under a key of its own (`id_key`: 0x02, the user id's UTF-8
  length as 4 bytes big-endian, the user id, the event id), valued `[ts, partition, offset]`
  (`encode_id`): the event's instant and the product-events record that brought it. A live
  record then writes one small key instead of its user's whole id set (docs/architecture.md,
  "Event ids under their own keys");
- a customer state (`encode_account`): first, offs (flat: topic, partition, user partition,
  offset), days, last, sub, nps, csat, orders, lastp, subp, npsp, csatp;
- a partition's meta (`encode_meta`, `encode_account_meta`): a positional array of its slots;
- a message of `<app>-account-facts`: `[0, [fact, ...]]` (`encode_facts`) or
  `[1, customer, request id]` (`encode_forget`); `decode_facts_message` tells them apart;
- forget tombstones (`encode_tombstones`): `{user hash: [[source key, offset], ...]}`.

Values outside msgpack's own types are msgpack extension types: 1, an int beyond 64 bits (its
two's-complement bytes, big-endian); 2, a `Fraction` (the msgpack array [numerator,
denominator]); 3, a str holding lone surrogates (its UTF-8 bytes, surrogates passed through).
Everything round-trips exactly: int vs Fraction vs float (-0.0, inf and nan included), None vs
an empty container, tuple vs list where the engine keeps one or the other, int dict keys.

Decoding bytes that are not such a value raises `CodecError`; bytes of another format version
raise `UnknownFormatVersion`, and pickled bytes (what releases before format versions wrote)
`PickledState`, whose message names the migration (docs/operations.md, "Upgrading stored
state: format versions"). Decoding never runs code from the bytes.

No faust, aiokafka or redis here.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import Any, NamedTuple

import msgspec

from streams.errors import EngagementError
from streams.live import AccountMeta, Batch, Fact, IdChange, Meta
from streams.records import PRODUCT_EVENTS, SURVEY_ANSWERS
from streams.state import AccountState, UserState

__all__ = [
    "FORMAT_VERSION",
    "ID_PREFIX",
    "CodecError",
    "ForgetRequest",
    "PickledState",
    "UnknownFormatVersion",
    "decode_account",
    "decode_account_meta",
    "decode_batch",
    "decode_facts_message",
    "decode_id",
    "decode_id_key",
    "decode_meta",
    "decode_tombstones",
    "decode_user",
    "encode_account",
    "encode_account_meta",
    "encode_batch",
    "encode_facts",
    "encode_forget",
    "encode_id",
    "encode_id_changes",
    "encode_meta",
    "encode_stored_user",
    "encode_tombstones",
    "encode_user",
    "id_key",
]

# 2: event ids under keys of their own (1: inside their user's value)
FORMAT_VERSION = 2
_PREFIX = bytes([FORMAT_VERSION])

MIGRATION = (
    "stop every worker, run `engagement rebuild --yes` (it keeps the forget tombstones, deletes "
    "the changelogs and internal topics and the local data directories given with --data-dir: "
    "delete every other worker's data directory too), then start the workers of this release, "
    "which reprocess the input topics (docs/operations.md, 'Upgrading stored state: format "
    "versions')"
)


class CodecError(EngagementError):
    """Bytes that are not a value of this codec (truncated, garbage, the wrong kind), or a value
    it cannot encode."""


class UnknownFormatVersion(CodecError):
    """A value written in a format version this release does not read."""

    def __init__(self, what: str, found: int) -> None:
        self.found = found
        if found > FORMAT_VERSION:
            why = (
                f"{what} was written in format version {found} (a newer release); this release "
                f"reads format version {FORMAT_VERSION}. Run the release that wrote it, or "
            )
        elif 1 <= found < FORMAT_VERSION:
            why = (
                f"{what} was written in format version {found} (an older release); this "
                f"release reads format version {FORMAT_VERSION}. To upgrade, "
            )
        else:
            why = (
                f"{what} starts with byte 0x{found:02x}, not a format version: this release "
                f"reads format version {FORMAT_VERSION} (the value was not written by this "
                "project's worker, or by a release before format versions); to start over, "
            )
        super().__init__(why + MIGRATION)


class PickledState(UnknownFormatVersion):
    """A pickled value: written by a release before format versions, never unpickled."""

    def __init__(self, what: str) -> None:
        self.found = 0x80
        CodecError.__init__(
            self,
            f"{what} is pickled: it was written by a release before format versions, and this "
            f"release reads format version {FORMAT_VERSION} only (it never unpickles: pickle "
            f"from a topic or a table would run code). To upgrade, {MIGRATION}",
        )


class ForgetRequest(NamedTuple):
    """The forget control message of `<app>-account-facts` (agents/forget.py)."""

    customer: str
    request_id: str


# ---- extension types ---------------------------------------------------------------------------

EXT_BIG_INT = 1
EXT_FRACTION = 2
EXT_SURROGATE_STR = 3

_MIN_INT = -(2**63)
_END_INT = 2**64


class _Key:
    """A dict key that msgpack cannot hold as is (an extension type), hashable while encoding."""

    __slots__ = ("ext",)

    def __init__(self, ext: msgspec.msgpack.Ext) -> None:
        self.ext = ext

    def __hash__(self) -> int:
        return hash((self.ext.code, self.ext.data))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Key)
            and self.ext.code == other.ext.code
            and self.ext.data == other.ext.data
        )


def _fraction(f: Fraction) -> msgspec.msgpack.Ext:
    return msgspec.msgpack.Ext(EXT_FRACTION, _pack([f.numerator, f.denominator], _ext_encoder))


def _enc_hook(obj: Any) -> Any:
    if type(obj) is Fraction:
        return _fraction(obj)
    if type(obj) is _Key:
        return obj.ext
    raise TypeError(f"the codec cannot encode a {type(obj).__name__}")


def _portable(obj: Any, key: bool = False) -> Any:
    """`obj` with every value msgpack cannot hold as is (an int beyond 64 bits, a Fraction, a
    str with lone surrogates) replaced by its extension type: the slow path, taken only when
    the plain encoding fails."""
    t = type(obj)
    ext: msgspec.msgpack.Ext | None = None
    if t is int:
        if _MIN_INT <= obj < _END_INT:
            return obj
        ext = msgspec.msgpack.Ext(
            EXT_BIG_INT, obj.to_bytes((obj.bit_length() + 8) // 8, "big", signed=True)
        )
    elif t is str:
        try:
            obj.encode("utf-8")
            return obj
        except UnicodeEncodeError:
            ext = msgspec.msgpack.Ext(EXT_SURROGATE_STR, obj.encode("utf-8", "surrogatepass"))
    elif t is Fraction:
        ext = _fraction(obj)
    elif t is list:
        return [_portable(x) for x in obj]
    elif t is tuple:
        return tuple(_portable(x, key) for x in obj)
    elif t is dict:
        return {_portable(k, True): _portable(v) for k, v in obj.items()}
    else:
        return obj
    return _Key(ext) if key else ext


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_ext_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)  # extension payloads (reentrancy)


def _pack(obj: Any, encoder: msgspec.msgpack.Encoder = _encoder) -> bytes:
    try:
        return encoder.encode(obj)
    except (OverflowError, UnicodeEncodeError):  # an int beyond 64 bits, a lone surrogate
        pass
    except TypeError as exc:
        raise CodecError(str(exc)) from None
    try:
        return encoder.encode(_portable(obj))
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode: {exc}") from None


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == EXT_BIG_INT:
        return int.from_bytes(data, "big", signed=True)
    if code == EXT_FRACTION:
        num, den = _ext_decoder.decode(data)
        if type(num) is not int or type(den) is not int or den <= 0:
            raise CodecError("a Fraction that is not integer / positive integer")
        return Fraction(num, den)
    if code == EXT_SURROGATE_STR:
        return bytes(data).decode("utf-8", "surrogatepass")
    raise CodecError(f"unknown extension type {code}")


_ext_decoder = msgspec.msgpack.Decoder(ext_hook=_ext_hook)
_any_decoder = msgspec.msgpack.Decoder(ext_hook=_ext_hook)


def _is_pickle(data: bytes) -> bool:
    return len(data) > 1 and data[0] == 0x80 and 2 <= data[1] <= 5  # pickle protocols 2 to 5


def _body(data: bytes, what: str) -> memoryview:
    """The msgpack value after the version byte; raises for any other version."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise CodecError(f"{what}: empty value")
    v = data[0]
    if v == FORMAT_VERSION:
        return memoryview(data)[1:]
    if _is_pickle(data):
        raise PickledState(what)
    raise UnknownFormatVersion(what, v)


def _decode(decoder: msgspec.msgpack.Decoder[Any], data: bytes, what: str) -> Any:
    body = _body(data, what)
    try:
        return decoder.decode(body)
    except CodecError:
        raise
    except Exception as exc:  # msgspec's errors, and those of the extension types
        raise CodecError(f"{what}: not a valid value ({type(exc).__name__}: {exc})") from None


# ---- source offsets: flat, with the input topics as small ints ---------------------------------

_TOPICS = (PRODUCT_EVENTS, SURVEY_ANSWERS)
_TOPIC_CODE = {t: i for i, t in enumerate(_TOPICS)}


def _flat_offs(offs: dict[Any, int] | None) -> list[Any] | None:
    if offs is None:
        return None
    out: list[Any] = []
    code = _TOPIC_CODE
    for k, o in offs.items():
        t = k[0]
        out.append(code.get(t, t))
        out.extend(k[1:])
        out.append(o)
    return out


def _offs(flat: list[Any] | None, width: int) -> dict[Any, int] | None:
    if flat is None:
        return None
    n = len(flat)
    if n % (width + 1):
        raise CodecError("source offsets of the wrong length")
    out: dict[Any, int] = {}
    for i in range(0, n, width + 1):
        t = flat[i]
        if type(t) is not str:
            if type(t) is not int or not 0 <= t < len(_TOPICS):
                raise CodecError("source offsets with an unknown topic code")
            t = _TOPICS[t]
        try:
            out[(t, *flat[i + 1 : i + width])] = flat[i + width]
        except TypeError:  # an unhashable partition
            raise CodecError("source offsets with a partition that is not a number") from None
    return out


# ---- user and customer states ------------------------------------------------------------------

_Dict = dict[Any, Any]
_Pairs = list[tuple[Any, Any]]


class _UserV1(msgspec.Struct, array_like=True):
    offs: list[Any] | None
    ids: _Dict | None
    days: _Dict | None = None
    last: Any = None
    signup: Any = None
    ms: _Dict | None = None
    features: dict[Any, list[Any]] | None = None
    answers: list[tuple[Any, Any, Any, Any]] | None = None
    sessions: dict[Any, list[Any]] | None = None
    orders: _Dict | None = None
    facts: _Pairs | None = None
    resp: _Dict | None = None
    tickets: dict[Any, list[Any]] | None = None
    returns: _Dict | None = None
    lastp: list[Any] | None = None


class _AccountV1(msgspec.Struct, array_like=True):
    first: Any
    offs: list[Any] | None = None
    days: _Dict | None = None
    last: Any = None
    sub: tuple[Any, Any] | None = None
    nps: tuple[Any, Any] | None = None
    csat: tuple[Any, Any] | None = None
    orders: _Pairs | None = None
    lastp: list[Any] | None = None
    subp: _Pairs | None = None
    npsp: _Pairs | None = None
    csatp: _Pairs | None = None


_user_decoder = msgspec.msgpack.Decoder(_UserV1, ext_hook=_ext_hook)
_account_decoder = msgspec.msgpack.Decoder(_AccountV1, ext_hook=_ext_hook)


def _trimmed(values: list[Any], keep: int) -> list[Any]:
    while len(values) > keep and values[-1] is None:
        values.pop()
    return values


def encode_user(u: UserState, ids: bool = True) -> bytes:
    """A user state; `ids=False`: with an empty ids slot (`encode_stored_user`)."""
    return _PREFIX + _pack(
        _trimmed(
            [
                _flat_offs(u.offs),
                u.ids if ids else {},
                u.days,
                u.last,
                u.signup,
                u.ms,
                u.features,
                u.answers,
                u.sessions,
                u.orders,
                u.facts,
                u.resp,
                u.tickets,
                u.returns,
                u.lastp,
            ],
            2,
        )
    )


def encode_stored_user(u: UserState) -> bytes:
    """A user as the worker's table stores it: without its event ids, each stored under a key
    of its own (`id_key`)."""
    return encode_user(u, False)


def decode_user(data: bytes) -> UserState:
    w: _UserV1 = _decode(_user_decoder, data, "a user state")
    u = UserState.__new__(UserState)
    u.offs = _offs(w.offs, 2)
    u.ids = w.ids  # type: ignore[assignment]
    u.days = w.days
    u.last = w.last
    u.signup = w.signup
    u.ms = w.ms
    u.features = w.features
    u.answers = w.answers
    u.sessions = w.sessions
    u.orders = w.orders
    u.facts = w.facts
    u.resp = w.resp
    u.tickets = w.tickets
    u.returns = w.returns
    u.lastp = w.lastp
    return u


# ---- event ids, one key each -------------------------------------------------------------------

ID_PREFIX = b"\x02"
# an entity's table key is its id after this byte (agents/epoch.py `entity_key`)
ENTITY_PREFIX = b"\x01"


def id_key(user_id: str, event_id: str) -> bytes:
    """The table key of one event id of a user: 0x02, the user id's UTF-8 length (4 bytes,
    big-endian), the user id, the event id (both may hold any character)."""
    u = user_id.encode("utf-8", "surrogatepass")
    return ID_PREFIX + len(u).to_bytes(4, "big") + u + event_id.encode("utf-8", "surrogatepass")


def decode_id_key(key: bytes) -> tuple[str, str]:
    """(user id, event id) of an `id_key`."""
    if key[:1] != ID_PREFIX or len(key) < 5:
        raise CodecError("not an event id's key")
    n = int.from_bytes(key[1:5], "big")
    if len(key) < 5 + n:
        raise CodecError("an event id's key shorter than its user id")
    try:
        return (
            key[5 : 5 + n].decode("utf-8", "surrogatepass"),
            key[5 + n :].decode("utf-8", "surrogatepass"),
        )
    except UnicodeDecodeError:
        raise CodecError("an event id's key that is not UTF-8") from None


def encode_id(ts: Any, partition: int, offset: int) -> bytes:
    """The value of an `id_key`: the event's instant and the product-events record (partition,
    offset) that brought it."""
    return _PREFIX + _pack([ts, partition, offset])


def encode_id_changes(changes: list[IdChange]) -> list[tuple[bytes, bytes | None]]:
    """The table writes of id changes (streams/live.py `IdChange`): a deletion for a dropped
    id."""
    return [(id_key(u, e), None if v is None else encode_id(*v)) for u, e, v in changes]


class _IdV1(msgspec.Struct, array_like=True):
    ts: Any
    partition: int
    offset: int


_id_decoder = msgspec.msgpack.Decoder(_IdV1, ext_hook=_ext_hook)


def decode_id(data: bytes) -> tuple[Any, int, int]:
    """(ts, partition, offset) of an `encode_id` value."""
    w: _IdV1 = _decode(_id_decoder, data, "an event id")
    if type(w.ts) not in (int, Fraction):
        raise CodecError("an event id whose instant is not a number")
    return w.ts, w.partition, w.offset


def encode_account(a: AccountState) -> bytes:
    return _PREFIX + _pack(
        _trimmed(
            [
                a.first,
                _flat_offs(a.offs),
                a.days,
                a.last,
                a.sub,
                a.nps,
                a.csat,
                a.orders,
                a.lastp,
                a.subp,
                a.npsp,
                a.csatp,
            ],
            1,
        )
    )


def decode_account(data: bytes) -> AccountState:
    w: _AccountV1 = _decode(_account_decoder, data, "a customer state")
    a = AccountState.__new__(AccountState)
    a.first = w.first
    a.offs = _offs(w.offs, 3)
    a.days = w.days
    a.last = w.last
    a.sub = w.sub
    a.nps = w.nps
    a.csat = w.csat
    a.orders = w.orders
    a.lastp = w.lastp
    a.subp = w.subp
    a.npsp = w.npsp
    a.csatp = w.csatp
    return a


# ---- partition metas ---------------------------------------------------------------------------
# One per partition, written with every message: positional arrays of every slot, in this order.

_META_SLOTS = (
    "accepted",
    "duplicates",
    "rejected",
    "offs",
    "srcw",
    "watermark",
    "dormant_until",
    "swept",
    "swept_at",
    "msg_offset",
    "event_offset",
    "fwd",
)
_ACCOUNT_META_SLOTS = ("watermark", "swept", "swept_at", "msg_offset", "event_offset")


class _MetaV1(msgspec.Struct, array_like=True):
    accepted: Any
    duplicates: Any
    rejected: _Dict
    offs: _Dict
    srcw: _Dict | None
    watermark: Any
    dormant_until: Any
    swept: Any
    swept_at: Any
    msg_offset: Any
    event_offset: Any
    fwd: _Dict | None = None


class _AccountMetaV1(msgspec.Struct, array_like=True):
    watermark: Any
    swept: Any
    swept_at: Any
    msg_offset: Any
    event_offset: Any


_meta_decoder = msgspec.msgpack.Decoder(_MetaV1, ext_hook=_ext_hook)
_account_meta_decoder = msgspec.msgpack.Decoder(_AccountMetaV1, ext_hook=_ext_hook)


def _slots(obj: Any, names: tuple[str, ...]) -> list[Any]:
    try:
        return [getattr(obj, n) for n in names]
    except AttributeError as exc:
        raise CodecError(f"cannot encode a {type(obj).__name__} without {exc.name}") from None


def encode_meta(meta: Meta) -> bytes:
    """A user partition's `streams.live.Meta`."""
    return _PREFIX + _pack(_slots(meta, _META_SLOTS))


def decode_meta(data: bytes) -> Meta:
    w = _decode(_meta_decoder, data, "a user partition's meta")
    m = Meta.__new__(Meta)
    for n in _META_SLOTS:
        setattr(m, n, getattr(w, n))
    return m


def encode_account_meta(meta: AccountMeta) -> bytes:
    """A customer partition's `streams.live.AccountMeta`."""
    return _PREFIX + _pack(_slots(meta, _ACCOUNT_META_SLOTS))


def decode_account_meta(data: bytes) -> AccountMeta:
    w = _decode(_account_meta_decoder, data, "a customer partition's meta")
    m = AccountMeta.__new__(AccountMeta)
    for n in _ACCOUNT_META_SLOTS:
        setattr(m, n, getattr(w, n))
    return m


# ---- messages of <app>-account-facts -----------------------------------------------------------

_FACTS = 0
_FORGET = 1

# (customer, ts, record ts ns, activity, kind, value, topic, partition, offset, user partition):
# streams.live.Fact
_FactWire = tuple[Any, Any, Any, Any, Any, Any, Any, Any, Any, Any]


class _FactsV1(msgspec.Struct, array_like=True, tag=_FACTS):
    facts: list[_FactWire]


class _ForgetV1(msgspec.Struct, array_like=True, tag=_FORGET):
    customer: Any
    request_id: Any


_message_decoder = msgspec.msgpack.Decoder(_FactsV1 | _ForgetV1, ext_hook=_ext_hook)


def encode_facts(facts: list[Fact]) -> bytes:
    """A facts message (a list of `streams.live.Fact`; empty: the runtime's nudge)."""
    return _PREFIX + _pack((_FACTS, facts))


def encode_forget(customer: str, request_id: str) -> bytes:
    """The forget control message passed to the customer's partition (agents/forget.py)."""
    return _PREFIX + _pack((_FORGET, customer, request_id))


def decode_facts_message(data: bytes) -> list[Fact] | ForgetRequest:
    """A message of `<app>-account-facts`: its list of facts, or a `ForgetRequest`."""
    m = _decode(_message_decoder, data, "an account-facts message")
    if type(m) is _FactsV1:
        return m.facts
    if type(m.customer) is not str or type(m.request_id) is not str:
        raise CodecError("a forget message whose customer or request id is not a str")
    return ForgetRequest(m.customer, m.request_id)


# ---- micro-batches of `<app>-batches` ----------------------------------------------------------

_batch_decoder = msgspec.msgpack.Decoder()


def encode_batch(batch: Batch) -> bytes:
    """A micro-batch of `<app>-batches` (the intake's records of one source partition, a
    forward, a forget request, a gap nudge): the version byte, then the msgpack array
    [topic, partition, [[offset, record ts ms, key, value], ...]]."""
    return _PREFIX + msgspec.msgpack.encode((batch.topic, batch.partition, batch.records))


# A micro-batch holds at most this many records and (roughly) bytes: the intake's cut of a fetch
MAX_BATCH_RECORDS = 2000
MAX_BATCH_BYTES = 4 * 1024 * 1024


def chunks(records: list[Any]) -> Iterable[list[Any]]:
    """`records` ((offset, record ts ms, key, value) tuples) cut into micro-batches: at most
    MAX_BATCH_RECORDS records, and at most MAX_BATCH_BYTES by key and value sizes plus 32 bytes a
    record (a single larger record is a micro-batch of its own)."""
    out: list[Any] = []
    size = 0
    for r in records:
        n = len(r[3] or b"") + len(r[2] or b"") + 32
        if out and (len(out) >= MAX_BATCH_RECORDS or size + n > MAX_BATCH_BYTES):
            yield out
            out, size = [], 0
        out.append(r)
        size += n
    if out:
        yield out


def encode_batches(topic: str, partition: int, records: list[Any]) -> list[bytes]:
    """The micro-batch messages of `records` read from one source partition (`chunks`,
    `encode_batch`): (offset, record ts ms, key, value) tuples, or runs of them (an object
    whose `records()` gives them: the compiled core's reading of a fetch, agents/raw_fetch.py).
    streams/native_live.py `encode_batches` gives the same bytes from the core."""
    if records and hasattr(records[0], "records"):
        records = [r for run in records for r in run.records()]
    return [encode_batch(Batch(topic, partition, c)) for c in chunks(records)]


def input_batch_heads(topics: Iterable[str]) -> tuple[bytes, ...]:
    """How a micro-batch message of each of `topics` begins (the version byte, the array of
    three, the topic): the users stage tells the core's messages (an input topic's records)
    from the others (forget requests, nudges) by it, without decoding."""
    return tuple(_PREFIX + b"\x93" + msgspec.msgpack.encode(t) for t in topics)


def decode_batch(data: bytes) -> Batch:
    """Also reads the micro-batches of releases before the version byte (the same array
    without it: its first byte, 0x93, is no version), which may be in flight during an
    upgrade."""
    what = "a micro-batch of <app>-batches"
    body: bytes | memoryview = data if data[:1] == b"\x93" else _body(data, what)
    try:
        topic, partition, records = _batch_decoder.decode(body)
        if type(topic) is not str or type(partition) is not int:
            raise TypeError("not [topic, partition, records]")
        return Batch(topic, partition, [tuple(r) for r in records])
    except CodecError:
        raise
    except Exception as exc:
        raise CodecError(f"{what}: not a valid value ({type(exc).__name__}: {exc})") from None


# ---- forget tombstones -------------------------------------------------------------------------

_MAP_MARKERS = frozenset((*range(0x80, 0x90), 0xDE, 0xDF))


def encode_tombstones(entries: dict[str, dict[tuple[Any, ...], int]]) -> bytes:
    """`agents.forget.Tombstones.entries`: user hash -> {source key -> last offset forgotten}."""
    return _PREFIX + _pack({h: [[list(k), o] for k, o in e.items()] for h, e in entries.items()})


def decode_tombstones(data: bytes) -> dict[str, dict[tuple[Any, ...], int]]:
    """Also reads format version 1 and the unversioned msgpack of releases before format
    versions (the same map), which `engagement rebuild` copies over as they are."""
    what = "forget tombstones"
    if isinstance(data, bytes) and data and data[0] in _MAP_MARKERS and not _is_pickle(data):
        data = _PREFIX + data
    elif isinstance(data, bytes) and data[:1] == b"\x01":
        data = _PREFIX + data[1:]
    raw = _decode(_any_decoder, data, what)
    try:
        return {h: {tuple(k): o for k, o in e} for h, e in raw.items()}
    except (AttributeError, TypeError, ValueError):
        raise CodecError(f"{what}: not a map of hash -> [[key, offset], ...]") from None
