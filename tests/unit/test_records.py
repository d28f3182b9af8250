"""Validation of both topics: every reject reason, in the contract's order, on both decode paths."""

import json

import pytest

from streams.errors import Reject
from streams.records import (
    decode_product,
    decode_survey,
    strict_product,
    strict_survey,
    time_reason,
)
from streams.timeutil import HOUR, MS

GOOD = {"event_id": "e-1", "type": "page_view", "user_id": "u-1", "ts": 1_000, "session_id": "s"}


def product(**over: object) -> bytes:
    d = dict(GOOD)
    for k, v in over.items():
        if v is ...:
            d.pop(k, None)
        else:
            d[k] = v
    return json.dumps(d).encode()


def reason_of(data: bytes | str, survey: bool = False) -> str | None:
    try:
        (decode_survey if survey else decode_product)(data)
    except Reject as r:
        return r.reason
    return None


def strict_reason(data: bytes | str, survey: bool = False) -> str | None:
    """The strict path alone (plus the same semantic checks)."""
    from streams.records import _check_product, _check_survey

    try:
        if survey:
            _check_survey(strict_survey(data))
        else:
            _check_product(strict_product(data))
    except Reject as r:
        return r.reason
    return None


CASES: list[tuple[bytes | str, str | None]] = [
    (product(), None),
    (product(ts="2026-11-20T10:00:00.123456789123Z"), None),
    (product(type="x" * 64), None),
    (product(type="x" * 65), "schema"),
    (product(type="Page_view"), "schema"),
    (product(type="9lives"), "schema"),
    (product(user_id="u" * 128), None),
    (product(user_id="\U0001f600" * 128), None),  # 128 code points, 512 bytes
    (product(user_id="u" * 129), "schema"),
    (product(user_id=""), "schema"),
    (product(user_id=42), "schema"),
    (product(event_id=...), "schema"),
    (product(ts=...), "schema"),
    (product(ts=1.5), "schema"),
    (product(ts=1000.0), "schema"),
    (product(ts="1000"), "schema"),
    (product(ts=True), "schema"),
    (product(ts="2026-11-20 10:00:00Z"), "schema"),
    (product(ts="2026-11-20T10:00:60Z"), "schema"),
    (product(ts=253402300800000), "schema"),  # 10000-01-01
    (product(ts=253402300799999), None),
    (product(ts=-62135596800000), None),  # 0001-01-01
    (product(ts=-62135596800001), "schema"),
    (product(account_id=None), None),
    (product(account_id=""), "schema"),
    (product(props=None), None),
    (product(props=[1]), "schema"),
    (product(session_id=...), "schema"),  # page_view needs session_id
    (product(type="custom_thing", session_id=...), None),
    (product(type="onboarding_step"), "schema"),
    (product(type="onboarding_step", props={"step": "welcome"}), None),
    (product(type="onboarding_step", props={"step": ""}), "schema"),
    (product(type="feature_used", props={"feature": 7}), "schema"),
    (product(type="purchase", props={"order_id": "o", "amount": 0}), None),
    (product(type="purchase", props={"order_id": "o", "amount": -0.01}), "schema"),
    (product(type="purchase", props={"order_id": "o", "amount": "5"}), "schema"),
    (product(type="purchase", props={"order_id": "o", "amount": True}), "schema"),
    (product(type="purchase", props={"order_id": "o"}), "schema"),
    (product(type="return", props={"order_id": "o"}), None),
    (product(type="ticket_opened", props={"ticket_id": "t"}), "schema"),
    (product(type="ticket_opened", props={"ticket_id": "t", "category": "billing"}), None),
    (product(type="ticket_resolved", props={"ticket_id": "t"}), None),
    (product(type="social_interaction", props={"action": "like"}), None),
    (product(type="social_interaction", props={"action": "poke"}), "schema"),
    (product(type="click"), None),
    (product(type="click", props={"placement": ""}), "schema"),
    (product(type="click", props={"placement": None}), None),
    (product(type="page_view", props={"placement": ""}), None),  # not checked for page_view
    (product(type="page_view", props={"amount": "x"}), None),
    (b"[]", "schema"),
    (b'"a string"', "schema"),
    (b"null", "schema"),
    # bad_json
    (b"", "bad_json"),
    (b"{", "bad_json"),
    (b'{"a": NaN}', "bad_json"),
    (b'{"a": Infinity}', "bad_json"),
    (b'{"a": -Infinity}', "bad_json"),
    (b"\xef\xbb\xbf" + product(), "bad_json"),  # a byte-order mark
    (b'{"event_id": "\xff"}', "bad_json"),  # not UTF-8
    ('{"event_id": "\ud800"}', "bad_json"),  # a lone surrogate in the value itself
    (b"{'event_id': 'e'}", "bad_json"),
    (b'{"a": 1,}', "bad_json"),
    (b'{"a": "\x01"}', "bad_json"),  # a raw control character in a string
]


@pytest.mark.parametrize(("data", "expected"), CASES)
def test_product_reasons(data: bytes | str, expected: str | None) -> None:
    assert reason_of(data) == expected
    assert strict_reason(data) == expected  # both paths agree


def test_escaped_surrogates() -> None:
    # an escaped lone surrogate decodes to a string that is not Unicode text: bad_json
    # (docs/decisions.md), even in a field the contract ignores; an escaped pair is fine
    data = b'{"event_id": "\\ud800", "type": "signup", "user_id": "u", "ts": 1}'
    assert reason_of(data) == "bad_json"
    data = b'{"event_id": "e", "type": "signup", "user_id": "u", "ts": 1, "x": {"\\udfff": 1}}'
    assert reason_of(data) == "bad_json"
    data = b'{"event_id": "e", "type": "signup", "user_id": "u", "ts": 1, "note": "\\ud800"}'
    assert reason_of(data) == "bad_json"  # in a field the fast decoder skips
    data = b'{"event_id": "\\ud83d\\ude00", "type": "signup", "user_id": "u", "ts": 1}'
    ev, _ = decode_product(data)
    assert ev.event_id == "\U0001f600"


def test_invalid_utf8_in_an_ignored_field() -> None:
    data = b'{"event_id": "e", "type": "signup", "user_id": "u", "ts": 1, "note": "\xed\xa0\x80"}'
    assert reason_of(data) == "bad_json"
    assert reason_of(data.decode("utf-8", "surrogatepass")) == "bad_json"  # as a replay payload
    ok = '{"event_id": "e", "type": "signup", "user_id": "u", "ts": 1, "note": "caf\u00e9 \U0001f600"}'
    assert reason_of(ok.encode()) is None and reason_of(ok) is None


def test_repeated_member_last_wins() -> None:
    data = b'{"event_id": "e", "type": "Bad!", "type": "signup", "user_id": "u", "ts": 1}'
    ev, _ = decode_product(data)
    assert ev.type == "signup"
    data = b'{"event_id": "e", "type": "signup", "type": "Bad!", "user_id": "u", "ts": 1}'
    assert reason_of(data) == "schema"


def test_huge_numbers() -> None:
    big = b'{"event_id":"e","type":"purchase","user_id":"u","ts":1,"props":{"order_id":"o","amount":1e400}}'
    assert reason_of(big) == "schema"  # valid JSON, amount not finite
    huge_int = (
        b'{"event_id":"e","type":"purchase","user_id":"u","ts":1,"props":{"order_id":"o","amount":1'
        + b"0" * 400
        + b"}}"
    )
    assert reason_of(huge_int) == "schema"
    ignored = b'{"event_id":"e","type":"page_view","session_id":"s","user_id":"u","ts":1,"props":{"x":1e400}}'
    assert reason_of(ignored) is None  # fields the contract does not name are ignored


def nested(levels_inside_props: int) -> bytes:
    inner = "[" * levels_inside_props + "]" * levels_inside_props
    return (
        f'{{"event_id":"e","type":"page_view","session_id":"s","user_id":"u","ts":1,"props":{{"x":{inner}}}}}'
    ).encode()


def test_depth_limit() -> None:
    # record object = level 1, props = level 2, then the arrays
    assert reason_of(nested(62)) is None  # 64 levels
    assert reason_of(nested(63)) == "bad_json"  # 65 levels
    assert reason_of(b"[" * 30_000 + b"]" * 30_000) == "bad_json"


def test_too_large_comes_first() -> None:
    big = b'{"event_id": "' + b"x" * 70_000 + b'"'  # also not JSON
    assert reason_of(big) == "too_large"
    value = product(props={"pad": "x" * (65_536 - len(product(props={"pad": ""})))})
    assert len(value) == 65_536
    assert reason_of(value) is None
    value = product(props={"pad": "x" * (65_537 - len(product(props={"pad": ""})))})
    assert reason_of(value) == "too_large"
    # a str value: lone surrogates count 3 bytes each
    s = '{"event_id": "' + "\ud800" * 21_846 + '"}'
    assert len(s.encode("utf-8", "surrogatepass")) > 65_536
    assert reason_of(s) == "too_large"


SURVEY = {"response_id": "r", "survey": "nps", "score": 9, "user_id": "u", "ts": 1}


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({}, None),
        ({"score": 0}, None),
        ({"score": 10}, None),
        ({"score": 11}, "schema"),
        ({"score": -1}, "schema"),
        ({"score": 9.0}, "schema"),
        ({"score": "9"}, "schema"),
        ({"score": True}, "schema"),
        ({"survey": "csat", "score": 0}, "schema"),
        ({"survey": "csat", "score": 5}, None),
        ({"survey": "csat", "score": 6}, "schema"),
        ({"survey": "ces", "score": 7}, None),
        ({"survey": "ces", "score": 8}, "schema"),
        ({"survey": "NPS"}, "schema"),
        ({"touchpoint": ""}, "schema"),
        ({"touchpoint": "support"}, None),
        ({"touchpoint": None}, None),
        ({"comment": 5}, "schema"),
        ({"comment": ""}, None),
        ({"response_id": None}, "schema"),
    ],
)
def test_survey_reasons(over: dict[str, object], expected: str | None) -> None:
    data = json.dumps({**SURVEY, **over}).encode()
    assert reason_of(data, survey=True) == expected
    assert strict_reason(data, survey=True) == expected


def test_time_reasons() -> None:
    rts = 1_800_000_000_000  # record ts, ms
    lateness = 48 * HOUR
    at = rts * MS
    assert time_reason(at + HOUR, rts, lateness) is None  # exactly 1 h after: allowed
    assert time_reason(at + HOUR + 1, rts, lateness) == "future"
    assert time_reason(at - lateness, rts, lateness) is None  # exactly the lateness: allowed
    assert time_reason(at - lateness - 1, rts, lateness) == "too_late"
