"""Records on the wire: decoding and validation of both input topics (docs/metrics.md §1).

The one definition of a valid record: the engagement-metrics worker, `engagement replay` and the
SDK's builders all run these functions (streams/records.py re-exports them).

Two decoders agree on every input:
- the fast path: msgspec decodes straight into typed structs (JSON types checked in C), then a
  few Python checks (lengths, the type pattern, the timestamp, per-type props);
- the strict path: the stdlib `json` with hooks, an explicit depth check and the same checks.
Any record the fast path refuses goes to the strict path, which decides the exact reason (fast
parsers disagree with the contract on edges: `1e400` overflows msgspec but is valid JSON whose
amount is then out of range, i.e. `schema`). The fast path never accepts what the strict path
would reject: bracket-heavy values (possible depth > 64) always take the strict path.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgspec

from engagement_sdk.errors import Reject
from engagement_sdk.recordspec import (
    PLACEMENT_TYPES,
    PRODUCT_EVENTS,
    PROPS_NAMES,
    SESSION_TYPES,
    SOCIAL_ACTIONS,
    SURVEY_ANSWERS,
    SURVEYS,
    TYPE_PATTERN,
)
from engagement_sdk.timeutil import END_MS, HOUR, MIN_MS, MS, Instant, parse_rfc3339

TOO_LARGE = "too_large"
BAD_JSON = "bad_json"
SCHEMA = "schema"
FUTURE = "future"
TOO_LATE = "too_late"
REJECT_REASONS: tuple[str, ...] = (TOO_LARGE, BAD_JSON, SCHEMA, FUTURE, TOO_LATE)

MAX_VALUE_BYTES = 65536
MAX_DEPTH = 64
FUTURE_NS = HOUR

INPUT_TOPICS = frozenset((PRODUCT_EVENTS, SURVEY_ANSWERS))

# The definitions live in recordspec.py (shared with the JSON Schemas and the builders).
TYPE_RE = re.compile(TYPE_PATTERN, re.ASCII)
_PROPS_NAMES = PROPS_NAMES
_SESSION_TYPES = frozenset(SESSION_TYPES)
_PLACEMENT_TYPES = frozenset(PLACEMENT_TYPES)


class ProductEvent(msgspec.Struct, gc=False):
    event_id: str
    type: str
    user_id: str
    ts: int | str
    account_id: str | None = None
    session_id: str | None = None
    props: dict[str, Any] | None = None


class SurveyAnswer(msgspec.Struct, gc=False):
    response_id: str
    survey: str
    score: int
    user_id: str
    ts: int | str
    account_id: str | None = None
    touchpoint: str | None = None
    comment: str | None = None


_product_decoder = msgspec.json.Decoder(ProductEvent)
_survey_decoder = msgspec.json.Decoder(SurveyAnswer)


_KNOWN_TYPES: set[str] = set()


def _type_ok(t: str) -> bool:
    if t in _KNOWN_TYPES:
        return True
    if TYPE_RE.fullmatch(t) is None:
        return False
    if len(_KNOWN_TYPES) < 10_000:
        _KNOWN_TYPES.add(t)
    return True


def _is_name(v: object) -> bool:
    return type(v) is str and 1 <= len(v) <= 128


def _instant(ts: int | str) -> Instant:
    if type(ts) is int:
        if MIN_MS <= ts < END_MS:
            return ts * MS
        raise Reject(SCHEMA, "ts out of range")
    inst = parse_rfc3339(ts)  # type: ignore[arg-type]
    if inst is None:
        raise Reject(SCHEMA, "ts is not an RFC 3339 instant with an offset")
    return inst


def _check_product(ev: ProductEvent) -> Instant:
    """The semantic checks shared by both paths; returns the event instant."""
    t = ev.type
    a = ev.account_id
    s = ev.session_id
    # the JSON types are already checked (by msgspec, or by the strict path's constructor)
    if not (
        0 < len(ev.event_id) <= 128
        and 0 < len(ev.user_id) <= 128
        and _type_ok(t)
        and (a is None or 0 < len(a) <= 128)
        and (s is None or 0 < len(s) <= 128)
    ):
        raise Reject(SCHEMA, _product_range_detail(ev))
    inst = _instant(ev.ts)
    props = ev.props
    names = _PROPS_NAMES.get(t)
    if names is not None:
        if props is None:
            raise Reject(SCHEMA, f"{t} needs props")
        for n in names:
            if not _is_name(props.get(n)):
                raise Reject(SCHEMA, f"{t} needs props.{n} (a string of 1-128 characters)")
    if t in _SESSION_TYPES:
        if ev.session_id is None:
            raise Reject(SCHEMA, f"{t} needs session_id")
    elif t == "purchase":
        assert props is not None
        amount = props.get("amount")
        if type(amount) is int:
            try:
                amount = float(amount)
            except OverflowError:
                raise Reject(SCHEMA, "purchase amount out of range") from None
        if type(amount) is not float or not (amount >= 0 and math.isfinite(amount)):
            raise Reject(SCHEMA, "purchase needs props.amount, a finite number >= 0")
        props["amount"] = amount
    elif t == "social_interaction":
        if props is None or props.get("action") not in SOCIAL_ACTIONS:
            raise Reject(
                SCHEMA, "social_interaction needs props.action in " + ", ".join(SOCIAL_ACTIONS)
            )
    elif t in _PLACEMENT_TYPES and props is not None:
        p = props.get("placement")
        if p is not None and not _is_name(p):
            raise Reject(SCHEMA, "props.placement must be a string of 1-128 characters")
    return inst


def _check_survey(ans: SurveyAnswer) -> Instant:
    rng = SURVEYS.get(ans.survey)
    if rng is None:
        raise Reject(SCHEMA, "survey must be csat, nps or ces")
    if not rng[0] <= ans.score <= rng[1]:
        raise Reject(SCHEMA, f"{ans.survey} score must be an integer {rng[0]}-{rng[1]}")
    if not (
        _is_name(ans.response_id)
        and _is_name(ans.user_id)
        and (ans.account_id is None or _is_name(ans.account_id))
        and (ans.touchpoint is None or _is_name(ans.touchpoint))
    ):
        raise Reject(SCHEMA, _names_detail(
            ("response_id", ans.response_id), ("user_id", ans.user_id),
            ("account_id", ans.account_id), ("touchpoint", ans.touchpoint),
        ))  # fmt: skip
    return _instant(ans.ts)


def _names_detail(*fields: tuple[str, str | None]) -> str:
    """The first of `fields` that is not a string of 1-128 characters (None: absent, valid)."""
    for name, v in fields:
        if v is not None and not 0 < len(v) <= 128:
            return f"{name} must be a string of 1-128 characters (got {len(v)})"
    return "an id is out of range"  # not reached: the caller found one


def _product_range_detail(ev: ProductEvent) -> str:
    """Which field of a product event failed the range checks (only on the reject path)."""
    if not _type_ok(ev.type):
        shown = ev.type if len(ev.type) <= 70 else ev.type[:67] + "..."
        return f"type {shown!r} must match [a-z][a-z0-9_]{{0,63}} (lowercase, digits, _)"
    return _names_detail(
        ("event_id", ev.event_id), ("user_id", ev.user_id),
        ("account_id", ev.account_id), ("session_id", ev.session_id),
    )  # fmt: skip


# ---- the strict path ---------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_MAX_INT_DIGITS = 4000  # below Python's limit on int <-> str conversions (4300 digits)
_BEYOND_EVERY_RANGE = 10**_MAX_INT_DIGITS


def _parse_int(s: str) -> int:
    """A JSON integer. One of thousands of digits is still JSON (RFC 8259 sets no limit), but
    Python refuses to convert it: it becomes an integer just as far beyond every range a field
    has (a `ts`, a score, an amount), so the record is judged the same (`schema`, or accepted
    when the field is ignored) instead of failing as `bad_json`."""
    if len(s) <= _MAX_INT_DIGITS:
        return int(s)
    return -_BEYOND_EVERY_RANGE if s[0] == "-" else _BEYOND_EVERY_RANGE


def _has_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _walk_reason(obj: Any, check_strings: bool) -> str | None:
    """Why a parsed value is not acceptable JSON text: too deep, or a string that is not Unicode
    text (an escaped lone surrogate such as "\\ud800"); None when it is fine."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if type(o) is dict:
            if d > MAX_DEPTH:
                return f"nested more than {MAX_DEPTH} levels"
            for k, v in o.items():
                if check_strings and _has_surrogate(k):
                    return "a string with an escaped lone surrogate"
                stack.append((v, d + 1))
        elif type(o) is list:
            if d > MAX_DEPTH:
                return f"nested more than {MAX_DEPTH} levels"
            stack.extend((v, d + 1) for v in o)
        elif check_strings and type(o) is str and _has_surrogate(o):
            return "a string with an escaped lone surrogate"
    return None


def strict_json(data: bytes | str) -> Any:
    """Parse a value as RFC 8259 JSON within the depth limit, or raise Reject(bad_json)."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject(BAD_JSON, "not UTF-8") from None
    else:
        text = data
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise Reject(BAD_JSON, "not UTF-8 (a lone surrogate)") from None
    try:
        obj = json.loads(text, parse_constant=_no_constant, parse_int=_parse_int)
    except RecursionError:
        raise Reject(BAD_JSON, "nested too deep") from None
    except ValueError as exc:
        raise Reject(BAD_JSON, str(exc).split(":")[0]) from None
    why = _walk_reason(obj, "\\u" in text)
    if why is not None:
        raise Reject(BAD_JSON, why)
    return obj


def _opt(d: dict[str, Any], key: str, kind: type) -> Any:
    v = d.get(key)
    if v is not None and type(v) is not kind:
        raise Reject(SCHEMA, f"{key} has the wrong type")
    return v


def _req(d: dict[str, Any], key: str, kind: type) -> Any:
    v = d.get(key)
    if v is None or type(v) is not kind:
        raise Reject(SCHEMA, f"{key} is required ({kind.__name__})")
    return v


def _req_ts(d: dict[str, Any]) -> int | str:
    v = d.get("ts")
    if type(v) is not int and type(v) is not str:
        raise Reject(SCHEMA, "ts is required (epoch ms integer or RFC 3339 string)")
    return v


def strict_product(data: bytes | str) -> ProductEvent:
    d = strict_json(data)
    if type(d) is not dict:
        raise Reject(SCHEMA, "the value is not a JSON object")
    return ProductEvent(
        event_id=_req(d, "event_id", str),
        type=_req(d, "type", str),
        user_id=_req(d, "user_id", str),
        ts=_req_ts(d),
        account_id=_opt(d, "account_id", str),
        session_id=_opt(d, "session_id", str),
        props=_opt(d, "props", dict),
    )


def strict_survey(data: bytes | str) -> SurveyAnswer:
    d = strict_json(data)
    if type(d) is not dict:
        raise Reject(SCHEMA, "the value is not a JSON object")
    return SurveyAnswer(
        response_id=_req(d, "response_id", str),
        survey=_req(d, "survey", str),
        score=_req(d, "score", int),
        user_id=_req(d, "user_id", str),
        ts=_req_ts(d),
        account_id=_opt(d, "account_id", str),
        touchpoint=_opt(d, "touchpoint", str),
        comment=_opt(d, "comment", str),
    )


# ---- the entry points --------------------------------------------------------------------------


def value_size(data: bytes | str) -> int:
    """Size in bytes of a value; in a str each lone surrogate counts 3 bytes."""
    if isinstance(data, bytes):
        return len(data)
    if len(data) * 4 <= MAX_VALUE_BYTES:
        return len(data)  # a lower bound that cannot exceed the limit: skip the encoding
    return len(data.encode("utf-8", "surrogatepass"))


_SURROGATE_ESCAPE_B = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_S = re.compile(r"\\u[dD][89a-fA-F]")


def _fast_path_unsafe(data: bytes | str) -> bool:
    """True when the fast decoder could accept a value the contract rejects: it skips fields it
    does not know without checking them, so bytes that are not UTF-8, escaped surrogates and
    deep nesting anywhere in the value are left to the strict path."""
    if isinstance(data, bytes):
        if data.count(b"[") + data.count(b"{") >= MAX_DEPTH:
            return True
        if not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return True
        return b"\\u" in data and _SURROGATE_ESCAPE_B.search(data) is not None
    if data.count("[") + data.count("{") >= MAX_DEPTH:
        return True
    if not data.isascii() and _has_surrogate(data):
        return True
    return "\\u" in data and _SURROGATE_ESCAPE_S.search(data) is not None


def decode_product(data: bytes | str) -> tuple[ProductEvent, Instant]:
    """Decode and validate a product event (steps 1-3); raises Reject. Time checks are separate."""
    if value_size(data) > MAX_VALUE_BYTES:
        raise Reject(TOO_LARGE, f"more than {MAX_VALUE_BYTES} bytes")
    ev: ProductEvent | None = None
    if not _fast_path_unsafe(data):
        try:
            ev = _product_decoder.decode(data)
        except (msgspec.DecodeError, UnicodeError):
            ev = None
    if ev is None:
        ev = strict_product(data)
    return ev, _check_product(ev)


def decode_survey(data: bytes | str) -> tuple[SurveyAnswer, Instant]:
    if value_size(data) > MAX_VALUE_BYTES:
        raise Reject(TOO_LARGE, f"more than {MAX_VALUE_BYTES} bytes")
    ans: SurveyAnswer | None = None
    if not _fast_path_unsafe(data):
        try:
            ans = _survey_decoder.decode(data)
        except (msgspec.DecodeError, UnicodeError):
            ans = None
    if ans is None:
        ans = strict_survey(data)
    return ans, _check_survey(ans)


def time_reason(inst: Instant, record_ts_ms: int, lateness_ns: int) -> str | None:
    """Steps 4-5: `future` or `too_late` against the record timestamp, else None."""
    rts = record_ts_ms * MS
    if inst > rts + FUTURE_NS:
        return FUTURE
    if inst < rts - lateness_ns:
        return TOO_LATE
    return None
