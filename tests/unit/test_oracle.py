"""Hand-computed tests of the test oracle itself (tests/oracle.py), so that we can trust the judge.

Every expected value below is worked out by hand in the comments from METRICS.md and
docs/decisions.md; none was copied from running the oracle.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, ClassVar

import pytest

from tests.oracle import (
    format_instant,
    max_depth,
    parse_as_of,
    parse_rfc3339,
    snapshot,
)

PRODUCT = "product-events"
SURVEY = "survey-answers"
T = "2026-11-20T12:00:00Z"
_ids = itertools.count(1)


def _dt(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("z", "Z").replace("Z", "+00:00"))


def ms(ts: str) -> int:
    """Epoch milliseconds of a simple RFC 3339 string (used to build inputs only)."""
    return int(_dt(ts).timestamp() * 1000)


def at(base: str = T, **delta: float) -> str:
    """`base` shifted by a timedelta, as an RFC 3339 UTC string (microsecond precision)."""
    return (_dt(base) + timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def line(
    payload: Any,
    *,
    topic: str = PRODUCT,
    record_ts: int | None = None,
    key: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> bytes:
    if record_ts is None:
        record_ts = ms(payload["ts"]) if isinstance(payload, dict) else ms(T)
    env: dict[str, Any] = {
        "topic": topic,
        "ts": record_ts,
        "key": key,
        "payload": payload if isinstance(payload, str) or payload is None else json.dumps(payload),
    }
    if partition is not None:
        env["partition"] = partition
    if offset is not None:
        env["offset"] = offset
    return json.dumps(env).encode()


def ev(etype: str, user: str, ts: str, *, eid: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"event_id": eid or f"e{next(_ids)}", "type": etype, "user_id": user, "ts": ts, **extra}


def ans(survey: str, score: int, user: str, ts: str, **extra: Any) -> dict[str, Any]:
    rid = extra.pop("rid", None) or f"r{next(_ids)}"
    return {
        "response_id": rid,
        "survey": survey,
        "score": score,
        "user_id": user,
        "ts": ts,
        **extra,
    }


def pe(etype: str, user: str, ts: str, **extra: Any) -> bytes:
    """One product-event line whose record timestamp equals its event ts (ms)."""
    return line(ev(etype, user, ts, **extra))


def sa(survey: str, score: int, user: str, ts: str, **extra: Any) -> bytes:
    return line(ans(survey, score, user, ts, **extra), topic=SURVEY)


def snap(lines: list[bytes], as_of: str = T, **config: Any) -> dict[str, Any]:
    return snapshot(lines, config, as_of)


NO_REJECTS = {"too_large": 0, "bad_json": 0, "schema": 0, "future": 0, "too_late": 0}


def rejects(**counts: int) -> dict[str, int]:
    return {**NO_REJECTS, **counts}


# ---------------------------------------------------------------------------------------------
# Time parsing and formatting
# ---------------------------------------------------------------------------------------------


class TestTime:
    def test_rfc3339_forms_give_the_same_instant(self) -> None:
        # 2026-11-20T10:00:00Z; 1795169100 s is 2026-11-20T10:05:00Z (METRICS.md §4 example).
        base = Fraction(1795169100 - 300)
        assert parse_rfc3339("2026-11-20T10:00:00Z") == base
        assert parse_rfc3339("2026-11-20t10:00:00z") == base
        assert parse_rfc3339("2026-11-20T11:30:00+01:30") == base
        assert parse_rfc3339("2026-11-20T05:00:00-05:00") == base
        assert parse_rfc3339("2026-11-20T10:00:00-00:00") == base
        assert parse_rfc3339("2026-11-20T10:00:00.250Z") == base + Fraction(1, 4)
        assert parse_rfc3339("2026-11-20T10:00:00.000000000000Z") == base

    def test_fractions_beyond_nanoseconds_are_exact(self) -> None:
        a = parse_rfc3339("2026-11-20T10:00:00.0000000001Z")
        b = parse_rfc3339("2026-11-20T10:00:00Z")
        assert a is not None and b is not None
        assert a - b == Fraction(1, 10**10)

    @pytest.mark.parametrize(
        "text",
        [
            "2026-11-20 10:00:00Z",  # space separator
            "2026-11-20T10:00:00",  # no offset
            "2026-11-20T10:00:60Z",  # second 60
            "2026-11-20T24:00:00Z",
            "2026-11-20T10:60:00Z",
            "2026-02-29T10:00:00Z",  # 2026 is not a leap year
            "1900-02-29T10:00:00Z",  # neither is 1900
            "2026-04-31T10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-00-01T10:00:00Z",
            "2026-11-00T10:00:00Z",
            "2026-11-20T10:00:00.Z",  # a dot needs a digit
            "2026-11-20T10:00:00+0100",
            "2026-11-20T10:00:00+01",
            "2026-11-20T10:00:00+24:00",
            "2026-11-20T10:00:00+01:60",
            "2026-1-20T10:00:00Z",
            "26-11-20T10:00:00Z",
            " 2026-11-20T10:00:00Z",
            "2026-11-20T10:00:00Z ",
            "2026-11-20T10:00:00ZZ",
            "２026-11-20T10:00:00Z",  # a full-width digit is not a digit here
            "9999-12-31T23:00:00-01:00",  # UTC year 10000
            "0001-01-01T00:00:00+00:01",  # UTC year 0
        ],
    )
    def test_invalid_rfc3339(self, text: str) -> None:
        assert parse_rfc3339(text) is None

    def test_year_edges(self) -> None:
        assert parse_rfc3339("0001-01-01T00:00:00Z") == -62135596800
        assert parse_rfc3339("2000-02-29T00:00:00Z") is not None  # 2000 is a leap year
        top = parse_rfc3339("9999-12-31T23:59:59.999999999999Z")
        assert top == 253402300800 - Fraction(1, 10**12)

    def test_as_of_and_formatting(self) -> None:
        assert parse_as_of("1795169100500") == Fraction(1795169100500, 1000)
        assert format_instant(parse_as_of("2026-11-20T10:00:00Z")) == "2026-11-20T10:00:00Z"
        assert format_instant(parse_as_of("2026-11-20T11:00:00.2500+01:00")) == (
            "2026-11-20T10:00:00.25Z"
        )
        assert format_instant(parse_as_of("1795169100500")) == "2026-11-20T10:05:00.5Z"
        assert format_instant(parse_as_of("0001-01-01T00:00:00.000000001Z")) == (
            "0001-01-01T00:00:00.000000001Z"
        )

    def test_depth(self) -> None:
        assert max_depth("{}") == 1
        assert max_depth('{"a": [[1], {"b": "[[[["}]}') == 3
        assert max_depth('{"a": "\\"[[["}') == 1


# ---------------------------------------------------------------------------------------------
# Classification: rejects, duplicates, redeliveries
# ---------------------------------------------------------------------------------------------

GOOD = ev("page_view", "u1", "2026-11-20T10:00:00Z", eid="good", session_id="s1")
GOOD_MS = ms("2026-11-20T10:00:00Z")


def _payload_with_size(size: int, tail: str = "") -> str:
    """A valid page_view object padded to exactly `size` UTF-8 bytes (+ `tail` inside pad)."""
    head = json.dumps(GOOD)[:-1] + ', "pad": "'
    end = tail + '"}'
    fill = size - len(head.encode()) - len(end.encode("utf-8", "surrogatepass"))
    return head + "x" * fill + end


def classify_one(
    payload: Any, *, topic: str = PRODUCT, record_ts: int = GOOD_MS, **config: Any
) -> dict[str, int]:
    out = snap([line(payload, topic=topic, record_ts=record_ts)], **config)
    counts = {"accepted": out["accepted"], "duplicates": out["duplicates"]}
    counts.update({k: v for k, v in out["rejected"].items() if v})
    return counts


def reason(payload: Any, **kw: Any) -> str:
    counts = classify_one(payload, **kw)
    hits = [k for k, v in counts.items() if v]
    assert len(hits) == 1 and counts[hits[0]] == 1, counts
    return hits[0]


class TestRejects:
    def test_size_limit(self) -> None:
        assert reason(_payload_with_size(65536)) == "accepted"
        assert reason(_payload_with_size(65537)) == "too_large"
        # A lone surrogate counts 3 bytes: 65533 + 3 = 65536 is not too large, but not UTF-8.
        assert reason(_payload_with_size(65536, "\ud800")) == "bad_json"
        assert reason(_payload_with_size(65537, "\ud800")) == "too_large"
        # Multi-byte characters count by bytes: 'é' is 2 bytes.
        assert reason(_payload_with_size(65537, "é")) == "too_large"
        # too_large comes before bad_json
        assert reason("[" * 70000) == "too_large"

    @pytest.mark.parametrize(
        "payload",
        [
            json.dumps(GOOD)[:-1] + ', "x": NaN}',
            json.dumps(GOOD)[:-1] + ', "x": Infinity}',
            json.dumps(GOOD)[:-1] + ', "x": -Infinity}',
            "\ufeff" + json.dumps(GOOD),
            json.dumps(GOOD)[:-1] + ', "x": "\ud800"}',  # lone surrogate: not UTF-8
            json.dumps(GOOD)[:-1] + ",}",  # trailing comma
            json.dumps(GOOD)[:-1],  # truncated
            json.dumps(GOOD) + " x",
            "{'event_id': 'e1'}",
            "",
            "   ",
            None,  # a tombstone
            json.dumps(GOOD)[:-1] + ', "x": ' + "[" * 64 + "]" * 64 + "}",  # depth 65
            json.dumps(GOOD)[:-1] + ', "x": ' + "[" * 65 + "]" * 64 + "}",  # deep and invalid
        ],
    )
    def test_bad_json(self, payload: str | None) -> None:
        assert reason(payload) == "bad_json"

    def test_depth_64_is_fine_and_duplicate_members_last_wins(self) -> None:
        deep = json.dumps(GOOD)[:-1] + ', "x": ' + "[" * 63 + "]" * 63 + "}"
        assert reason(deep) == "accepted"
        # The first "user_id" is a number (schema) but the last one wins.
        dup = '{"user_id": 5, ' + json.dumps(GOOD)[1:]
        assert reason(dup) == "accepted"
        dup_bad = json.dumps(GOOD)[:-1] + ', "user_id": 5}'
        assert reason(dup_bad) == "schema"
        # Whitespace around the value is JSON; a huge integer in an ignored field is fine.
        assert reason(" \n" + json.dumps(GOOD)[:-1] + ', "big": ' + "9" * 5000 + "}\r\n") == (
            "accepted"
        )

    def test_envelope_problems_are_bad_json(self) -> None:
        good_payload = json.dumps(GOOD)
        envelopes = [
            b"\xff\xfe{}",  # not UTF-8
            b'{"topic": "product-events", "ts": 1, "payload": "{}"',  # not JSON
            b"[]",
            json.dumps({"ts": GOOD_MS, "payload": good_payload}).encode(),  # no topic
            json.dumps({"topic": PRODUCT, "payload": good_payload}).encode(),  # no ts
            json.dumps({"topic": PRODUCT, "ts": "1", "payload": good_payload}).encode(),
            json.dumps({"topic": PRODUCT, "ts": 1.0, "payload": good_payload}).encode(),
            json.dumps({"topic": PRODUCT, "ts": GOOD_MS}).encode(),  # no payload
            json.dumps({"topic": PRODUCT, "ts": GOOD_MS, "payload": GOOD}).encode(),  # object
            json.dumps(
                {"topic": PRODUCT, "ts": GOOD_MS, "payload": good_payload, "key": 1}
            ).encode(),
            json.dumps(
                {"topic": PRODUCT, "ts": GOOD_MS, "payload": good_payload, "offset": "1"}
            ).encode(),
            json.dumps({"topic": 1, "ts": GOOD_MS, "payload": good_payload}).encode(),
        ]
        out = snap([*envelopes, b"", b"  "])  # blank lines are ignored
        assert out["rejected"] == rejects(bad_json=len(envelopes))
        assert out["accepted"] == 0

    def test_other_topics_are_skipped(self) -> None:
        out = snap([line(GOOD, topic="dead-letters"), line("not json", topic="other")])
        assert out["accepted"] == 0 and out["rejected"] == NO_REJECTS

    @pytest.mark.parametrize(
        ("change", "expected"),
        [
            ({}, "accepted"),
            ({"event_id": None}, "schema"),
            ({"event_id": ""}, "schema"),
            ({"event_id": "x" * 128}, "accepted"),
            ({"event_id": "x" * 129}, "schema"),
            ({"event_id": "😀" * 128}, "accepted"),  # 128 code points
            ({"event_id": 7}, "schema"),
            ({"user_id": ["u1"]}, "schema"),
            ({"type": "Page_view"}, "schema"),
            ({"type": "9lives"}, "schema"),
            ({"type": "a" * 64}, "accepted"),  # a custom event type
            ({"type": "a" * 65}, "schema"),
            ({"type": "a-b"}, "schema"),
            ({"session_id": None}, "schema"),  # page_view needs a session
            ({"session_id": 3}, "schema"),
            ({"account_id": None}, "accepted"),
            ({"account_id": ""}, "schema"),
            ({"props": None}, "accepted"),
            ({"props": []}, "schema"),
            ({"props": {"step": 1}}, "accepted"),  # page_view does not check props fields
            ({"comment": 5}, "accepted"),  # not a field of product events
            ({"ts": 1795168800000}, "accepted"),  # integer ms, = 10:00:00Z
            ({"ts": 1795168800000.0}, "schema"),
            ({"ts": "1795161600000"}, "schema"),
            ({"ts": "2026-11-20 10:00:00Z"}, "schema"),
            ({"ts": "2026-11-20T10:00:00"}, "schema"),
            ({"ts": "2026-11-20T10:00:60Z"}, "schema"),
            ({"ts": "2026-11-20T11:00:00+01:00"}, "accepted"),
            ({"ts": "2026-11-20t10:00:00.123456789123z"}, "accepted"),
            ({"ts": True}, "schema"),
            ({"ts": None}, "schema"),
        ],
    )
    def test_product_schema(self, change: dict[str, Any], expected: str) -> None:
        assert reason({**GOOD, **change}) == expected

    @pytest.mark.parametrize(
        ("etype", "props", "extra", "expected"),
        [
            ("onboarding_step", {"step": "welcome"}, {}, "accepted"),
            ("onboarding_step", {}, {}, "schema"),
            ("onboarding_step", None, {}, "schema"),
            ("onboarding_step", {"step": ""}, {}, "schema"),
            ("feature_used", {"feature": "export"}, {}, "accepted"),
            ("feature_used", {"feature": 1}, {}, "schema"),
            ("click", {"placement": "hero"}, {}, "accepted"),
            ("click", {"placement": None}, {}, "accepted"),
            ("click", {}, {}, "accepted"),
            ("impression", {"placement": 5}, {}, "schema"),
            ("purchase", {"order_id": "o1", "amount": 0}, {}, "accepted"),
            ("purchase", {"order_id": "o1", "amount": -0.0}, {}, "accepted"),
            ("purchase", {"order_id": "o1", "amount": 12.5}, {}, "accepted"),
            ("purchase", {"order_id": "o1", "amount": 10**300}, {}, "accepted"),
            ("purchase", {"order_id": "o1", "amount": 10**400}, {}, "schema"),
            ("purchase", {"order_id": "o1", "amount": -1}, {}, "schema"),
            ("purchase", {"order_id": "o1", "amount": "12"}, {}, "schema"),
            ("purchase", {"order_id": "o1", "amount": True}, {}, "schema"),
            ("purchase", {"order_id": "o1"}, {}, "schema"),
            ("purchase", {"amount": 1}, {}, "schema"),
            ("return", {"order_id": "o1"}, {}, "accepted"),
            ("return", {"order_id": None}, {}, "schema"),
            ("ticket_opened", {"ticket_id": "k", "category": "billing"}, {}, "accepted"),
            ("ticket_opened", {"ticket_id": "k"}, {}, "schema"),
            ("ticket_resolved", {"ticket_id": "k"}, {}, "accepted"),
            ("social_interaction", {"action": "like"}, {}, "accepted"),
            ("social_interaction", {"action": "poke"}, {}, "schema"),
            ("social_interaction", {"action": "Like"}, {}, "schema"),
            ("session_start", None, {"session_id": "s"}, "accepted"),
            ("session_end", None, {}, "schema"),
            ("signup", {"step": 5}, {}, "accepted"),  # not checked for signup
            ("signup", "x", {}, "schema"),  # but props must be an object
        ],
    )
    def test_props(self, etype: str, props: Any, extra: dict[str, Any], expected: str) -> None:
        payload = {"event_id": "e", "type": etype, "user_id": "u", "ts": "2026-11-20T10:00:00Z"}
        payload.update(extra)
        if props is not None:
            payload["props"] = props
        else:
            payload["props"] = None
        assert reason(payload) == expected

    def test_click_without_props(self) -> None:
        # METRICS.md: click/impression require nothing (props.placement optional); the oracle
        # reads decisions.md #3's "missing props is schema" as applying to types with a
        # required props field only.
        payload = {"event_id": "e", "type": "click", "user_id": "u", "ts": "2026-11-20T10:00:00Z"}
        assert reason(payload) == "accepted"
        assert reason({**payload, "props": None}) == "accepted"
        assert reason({**payload, "props": "hero"}) == "schema"

    def test_float_amounts_written_as_text(self) -> None:
        base = '{"event_id": "e", "type": "purchase", "user_id": "u", "ts": 1795161600000, '
        assert reason(base + '"props": {"order_id": "o", "amount": 1e308}}') == "accepted"
        assert reason(base + '"props": {"order_id": "o", "amount": 1e400}}') == "schema"
        assert reason(base + '"props": {"order_id": "o", "amount": ' + "9" * 400 + "}}") == (
            "schema"
        )

    @pytest.mark.parametrize(
        ("change", "expected"),
        [
            ({}, "accepted"),
            ({"score": 9.0}, "schema"),
            ({"score": "9"}, "schema"),
            ({"score": True}, "schema"),
            ({"score": 11}, "schema"),
            ({"score": 0}, "accepted"),
            ({"score": -1}, "schema"),
            ({"survey": "csat", "score": 0}, "schema"),
            ({"survey": "csat", "score": 5}, "accepted"),
            ({"survey": "csat", "score": 6}, "schema"),
            ({"survey": "ces", "score": 7}, "accepted"),
            ({"survey": "ces", "score": 8}, "schema"),
            ({"survey": "CSAT", "score": 5}, "schema"),
            ({"survey": None}, "schema"),
            ({"touchpoint": None}, "accepted"),
            ({"touchpoint": ""}, "schema"),
            ({"touchpoint": "t" * 129}, "schema"),
            ({"comment": None}, "accepted"),
            ({"comment": ""}, "accepted"),
            ({"comment": "x" * 1000}, "accepted"),
            ({"comment": 5}, "schema"),
            ({"response_id": None}, "schema"),
            ({"account_id": 1}, "schema"),
            ({"props": 1, "session_id": 5}, "accepted"),  # not fields of survey answers
        ],
    )
    def test_survey_schema(self, change: dict[str, Any], expected: str) -> None:
        base = ans("nps", 9, "u1", "2026-11-20T10:00:00Z", rid="r1", touchpoint="web")
        assert reason({**base, **change}, topic=SURVEY) == expected

    def test_not_an_object_is_schema(self) -> None:
        for text in ("[]", "1", '"x"', "null", "true"):
            assert reason(text) == "schema"

    def test_future_and_too_late_boundaries(self) -> None:
        rts = GOOD_MS  # record ts 2026-11-20T10:00:00Z
        # exactly 1h after the record ts: accepted; 1 ns more: future
        assert reason({**GOOD, "ts": "2026-11-20T11:00:00Z"}, record_ts=rts) == "accepted"
        assert reason({**GOOD, "ts": "2026-11-20T11:00:00.000000001Z"}, record_ts=rts) == "future"
        assert reason({**GOOD, "ts": "2026-11-20T11:00:00.0000000001Z"}, record_ts=rts) == (
            "future"
        )
        # exactly 48h before: accepted; 1 ms more: too_late
        assert reason({**GOOD, "ts": "2026-11-18T10:00:00Z"}, record_ts=rts) == "accepted"
        assert reason({**GOOD, "ts": "2026-11-18T09:59:59.999Z"}, record_ts=rts) == "too_late"
        # configured lateness: 6h
        assert (
            reason({**GOOD, "ts": "2026-11-20T04:00:00Z"}, record_ts=rts, allowed_lateness_hours=6)
            == "accepted"
        )
        assert (
            reason({**GOOD, "ts": "2026-11-20T03:59:59Z"}, record_ts=rts, allowed_lateness_hours=6)
            == "too_late"
        )
        # schema comes before future
        assert reason({**GOOD, "ts": "2027-11-20T10:00:00Z", "user_id": ""}) == "schema"

    def test_year_edges_in_records(self) -> None:
        first = -62135596800000  # 0001-01-01T00:00:00Z in ms
        assert reason({**GOOD, "ts": first}, record_ts=first) == "accepted"
        assert reason({**GOOD, "ts": first - 1}, record_ts=first) == "schema"
        assert reason({**GOOD, "ts": "0001-01-01T00:00:00Z"}, record_ts=first) == "accepted"
        last = 253402300799999  # 9999-12-31T23:59:59.999Z
        assert reason({**GOOD, "ts": last}, record_ts=last) == "accepted"
        assert reason({**GOOD, "ts": last + 1}, record_ts=last) == "schema"


class TestDuplicates:
    def test_first_wins_whatever_the_content(self) -> None:
        a = ev("purchase", "u1", at(hours=-2), eid="e1", props={"order_id": "o1", "amount": 10})
        b = ev("purchase", "u1", at(hours=-1), eid="e1", props={"order_id": "o2", "amount": 99})
        other_user = {**b, "user_id": "u2"}  # same event_id, another user: a new event
        answer = ans("nps", 9, "u1", at(hours=-1), rid="e1")  # another namespace
        out = snap([line(a), line(b), line(other_user), line(answer, topic=SURVEY)])
        # accepted: a, other_user, answer; duplicate: b. Orders: (u1,o1)=10, (u2,o2)=99.
        assert out["accepted"] == 3 and out["duplicates"] == 1
        assert out["orders_90d"] == 2 and out["revenue_90d"] == 109.0

    def test_a_rejected_copy_is_not_a_duplicate(self) -> None:
        a = ev("page_view", "u1", at(hours=-1), eid="e1", session_id="s")
        late = {**a, "ts": at(hours=-100)}  # too_late for a record ts of T-1h
        bad = {**a, "session_id": None}  # schema
        out = snap([line(a), line(late, record_ts=ms(a["ts"])), line(bad, record_ts=ms(a["ts"]))])
        assert out["accepted"] == 1 and out["duplicates"] == 0
        assert out["rejected"] == rejects(too_late=1, schema=1)

    def test_a_rejected_first_does_not_reserve_the_id(self) -> None:
        a = ev("page_view", "u1", at(hours=-1), eid="e1", session_id="s")
        out = snap([line({**a, "session_id": None}), line(a), line(a)])
        assert out["rejected"] == rejects(schema=1)
        assert out["accepted"] == 1 and out["duplicates"] == 1

    def test_duplicates_count_whatever_their_ts(self) -> None:
        a = ev("page_view", "u1", at(minutes=30), eid="e1", session_id="s")  # after T
        out = snap([line(a), line(a)])
        assert out["accepted"] == 1 and out["duplicates"] == 1 and out["dau"] == 0

    def test_redelivery(self) -> None:
        a = ev("page_view", "u1", at(hours=-1), eid="e1", session_id="s")
        b = ev("page_view", "u2", at(hours=-1), eid="e2", session_id="s")
        lines = [
            line(a, partition=0, offset=5),
            line(a, partition=0, offset=5),  # redelivered: nothing, not even a duplicate
            line(b, partition=0, offset=4),  # lower offset: a redelivery too, even new content
            line("garbage", partition=0, offset=5),  # not a bad_json: a redelivery
            line(a, partition=1, offset=5),  # another partition: a duplicate
            line(a, topic=SURVEY, partition=0, offset=5),  # another topic: schema
            line(a),  # no partition/offset: all new -> duplicate
            line(a, partition=0),  # only a partition: new -> duplicate
            line(b, partition=0, offset=6),  # higher: new, accepted
        ]
        out = snap(lines)
        assert out["accepted"] == 2
        assert out["duplicates"] == 3
        assert out["rejected"] == rejects(schema=1)
        assert out["dau"] == 2


# ---------------------------------------------------------------------------------------------
# Activity, lifecycle and DST
# ---------------------------------------------------------------------------------------------


class TestActivity:
    def test_dau_wau_mau_lifecycle_features(self) -> None:
        # T = 2026-11-20T12:00Z, UTC: D0 = Nov 20; D0-6 = Nov 14; D0-29 = Oct 22.
        lines = [
            pe("signup", "u1", "2026-11-20T01:00:00Z"),  # new
            pe("page_view", "u2", "2026-11-19T08:00:00Z", session_id="s"),
            pe("feature_used", "u2", "2026-11-20T08:00:00Z", props={"feature": "export"}),
            pe("key_action", "u3", "2026-11-20T11:59:59Z"),  # resurrecting
            pe("key_action", "u3", "2026-11-15T11:00:00Z"),
            pe("click", "u4", "2026-11-19T23:59:59.999Z", props={}),  # dormant
            # u5: first signup (arrival order) is after T: no signup instant as of T
            line(ev("signup", "u5", "2026-11-20T12:30:00Z"), record_ts=ms(T)),
            pe("signup", "u5", "2026-11-20T02:00:00Z"),
            pe("custom_thing", "u5", "2026-11-19T02:00:00Z"),  # so u5 is returning
            pe("impression", "u6", "2026-11-20T10:00:00Z", props={}),  # not activity
            pe("signup", "u7", "2026-11-10T00:00:00Z"),
            pe("page_view", "u7", "2026-11-20T00:00:00Z", session_id="s"),  # resurrecting
            pe("feature_used", "u8", "2026-10-22T00:00:00Z", props={"feature": "export"}),
            pe("feature_used", "u9", "2026-10-21T23:59:59Z", props={"feature": "import"}),
            pe("page_view", "u10", "2026-11-20T12:00:00.001Z", session_id="s"),  # after T
        ]
        out = snap(lines)
        # dau: u1 u2 u3 u5 u7 = 5; wau adds u4 = 6; mau adds u8 = 7 (u9 is D0-30).
        assert (out["dau"], out["wau"], out["mau"]) == (5, 6, 7)
        assert out["stickiness_pct"] == pytest.approx(500 / 7)
        # export: u2 and u8 -> 2/7; import was used on D0-30 only: no key.
        assert out["feature_adoption_pct"] == {"export": pytest.approx(200 / 7)}
        assert out["lifecycle"] == {"new": 1, "returning": 2, "resurrecting": 2, "dormant": 1}

    def test_inactive_events_config(self) -> None:
        lines = [
            pe("impression", "u1", at(hours=-1), props={}),
            pe("page_view", "u2", at(hours=-1), session_id="s"),
        ]
        assert snap(lines)["dau"] == 1
        assert snap(lines, inactive_events=[])["dau"] == 2
        assert snap(lines, inactive_events=["page_view"])["dau"] == 1
        # mau 0 -> feature adoption ratios are null
        out = snap(
            [pe("feature_used", "u1", at(hours=-1), props={"feature": "f"})],
            inactive_events=["feature_used"],
        )
        assert out["mau"] == 0 and out["feature_adoption_pct"] == {"f": None}
        assert out["stickiness_pct"] is None

    def test_fall_back_new_york(self) -> None:
        # 2026-11-01: EDT ends at 06:00Z; Nov 1 local lasts 25h: [04:00Z Nov 1, 05:00Z Nov 2).
        as_of = "2026-11-02T05:30:00Z"  # Nov 2 00:30 EST: D0 = Nov 2
        lines = [
            pe("key_action", "a", "2026-11-02T05:00:00Z"),  # Nov 2 00:00 EST: D0
            pe("key_action", "b", "2026-11-02T04:59:59.999999999Z"),  # Nov 1 23:59:59 EST
            pe("key_action", "c", "2026-11-01T04:00:00Z"),  # Nov 1 00:00 EDT: D0-1
            pe("key_action", "d", "2026-11-01T03:59:59Z"),  # Oct 31 23:59:59 EDT: D0-2
        ]
        ny = snap(lines, as_of, timezone="America/New_York")
        assert (ny["dau"], ny["wau"]) == (1, 4)
        assert ny["lifecycle"] == {"new": 0, "returning": 0, "resurrecting": 1, "dormant": 2}
        # In UTC: D0 = Nov 2 holds a and b, D0-1 = Nov 1 holds c and d.
        utc = snap(lines, as_of)
        assert (utc["dau"], utc["wau"]) == (2, 4)
        assert utc["lifecycle"] == {"new": 0, "returning": 0, "resurrecting": 2, "dormant": 2}

    def test_spring_forward_new_york(self) -> None:
        # 2026-03-08 local lasts 23h: [05:00Z Mar 8, 04:00Z Mar 9).
        as_of = "2026-03-09T12:00:00Z"  # Mar 9 08:00 EDT
        lines = [
            pe("key_action", "a", "2026-03-09T04:00:00Z"),  # Mar 9 00:00 EDT: D0
            pe("key_action", "b", "2026-03-09T03:59:59Z"),  # Mar 8 23:59:59 EDT: D0-1
            pe("key_action", "c", "2026-03-08T05:00:00Z"),  # Mar 8 00:00 EST: D0-1
            pe("key_action", "d", "2026-03-08T04:59:59Z"),  # Mar 7 23:59:59 EST: D0-2
            pe("key_action", "a", "2026-03-08T12:00:00Z"),  # a also on D0-1: returning
        ]
        out = snap(lines, as_of, timezone="America/New_York")
        assert out["dau"] == 1
        assert out["lifecycle"] == {"new": 0, "returning": 1, "resurrecting": 0, "dormant": 2}

    def test_hour_windows_are_exact_across_dst(self) -> None:
        # T-24h is 2026-11-01T05:30Z whatever the calendar says (Nov 1 is 25h long in NY).
        as_of = "2026-11-02T05:30:00Z"
        lines = [
            sa("csat", 5, "u1", "2026-11-01T05:30:00Z"),  # exactly T-24h: out
            sa("csat", 1, "u2", "2026-11-01T05:30:00.000000001Z"),  # in
            sa("csat", 4, "u3", "2026-11-02T05:30:00Z"),  # exactly T: in
            sa("csat", 4, "u4", "2026-11-02T05:30:00.0000000001Z"),  # after T: out
        ]
        out = snap(lines, as_of, timezone="America/New_York")
        assert out["csat_responses_24h"] == 2
        assert out["csat_pct_24h"] == 50.0
        assert out["csat_pct_1h"] == 100.0  # only the answer at T
        assert out["churn_signals_24h"]["csat_negative"] == 1
        assert out["churn_signals_1h"]["csat_negative"] == 0


# ---------------------------------------------------------------------------------------------
# Onboarding
# ---------------------------------------------------------------------------------------------


class TestOnboarding:
    def test_activation_and_first_week_return(self) -> None:
        # T = Nov 20 12:00Z, UTC: mature cohort = signup days Nov 7 .. Nov 13.
        lines = [
            # a1: both milestones in [S, S+7d) -> activated; returns on Nov 8 -> returned
            pe("signup", "a1", "2026-11-07T10:00:00Z"),
            pe("profile_completed", "a1", "2026-11-08T00:00:00Z"),
            pe("key_action", "a1", "2026-11-14T09:59:59.999Z"),
            # a2: key_action exactly at S+7d: not activated, not returned (Nov 10 is its day)
            pe("signup", "a2", "2026-11-10T12:00:00Z"),
            pe("profile_completed", "a2", "2026-11-10T13:00:00Z"),
            pe("key_action", "a2", "2026-11-17T12:00:00Z"),
            # a3: key_action at S exactly, profile before S (ignored), then Nov 20 10:00 < S+7d
            pe("signup", "a3", "2026-11-13T11:00:00Z"),
            pe("key_action", "a3", "2026-11-13T11:00:00Z"),
            pe("profile_completed", "a3", "2026-11-12T11:00:00Z"),
            pe("profile_completed", "a3", "2026-11-20T10:00:00Z"),
            # a4: signed up Nov 6: not in the cohort
            pe("signup", "a4", "2026-11-06T23:59:59Z"),
            # a5: activated on its signup day; only an impression afterwards: not returned
            pe("signup", "a5", "2026-11-09T00:00:00Z"),
            pe("profile_completed", "a5", "2026-11-09T01:00:00Z"),
            pe("key_action", "a5", "2026-11-09T02:00:00Z"),
            pe("impression", "a5", "2026-11-10T02:00:00Z", props={}),
        ]
        out = snap(lines)
        # cohort a1 a2 a3 a5: activated a1 a3 a5 = 3/4; returned a1 a3 = 2/4
        assert out["first_week_activation_pct"] == 75.0
        assert out["first_week_return_pct"] == 50.0
        out = snap(lines, activation_events=["key_action"])
        # a1, a2? key_action at S+7d no; a3 yes; a5 yes -> 3/4
        assert out["first_week_activation_pct"] == 75.0
        out = snap(lines, activation_events=["profile_completed"], inactive_events=[])
        # all four have profile_completed in the week (a3 on Nov 20 10:00); a5's impression
        # on Nov 10 now counts as a return: a1 a3 a5 = 3/4
        assert out["first_week_activation_pct"] == 100.0
        assert out["first_week_return_pct"] == 75.0

    def test_ttfv_lower_median(self) -> None:
        lines = [
            pe("signup", "t1", "2026-11-01T00:00:00Z"),
            pe("key_action", "t1", "2026-11-03T00:00:00Z"),
            pe("key_action", "t1", "2026-11-01T02:00:00Z"),  # earliest by ts: 2h
            pe("signup", "t2", "2026-11-02T00:00:00Z"),
            pe("key_action", "t2", "2026-11-01T23:00:00Z"),  # before S: ignored
            pe("key_action", "t2", "2026-11-02T05:00:00Z"),  # 5h
            pe("signup", "t3", "2026-11-03T00:00:00Z"),
            pe("key_action", "t3", "2026-11-03T01:00:00Z"),  # 1h
            pe("signup", "t4", "2026-11-04T00:00:00Z"),
            pe("key_action", "t4", "2026-11-04T10:00:00Z"),  # 10h
            pe("signup", "t5", "2026-10-21T12:00:00Z"),  # S = T-30d exactly: excluded
            pe("key_action", "t5", "2026-10-21T12:30:00Z"),
            pe("signup", "t6", "2026-11-20T11:00:00Z"),
            pe("key_action", "t6", "2026-11-20T12:01:00Z"),  # after T: excluded
        ]
        # durations 1 2 5 10 -> lower middle = 2
        assert snap(lines)["ttfv_median_hours"] == 2.0
        more = [
            *lines,
            pe("signup", "t7", "2026-11-05T00:00:00Z"),
            pe("key_action", "t7", "2026-11-05T03:00:00Z"),
        ]
        # 1 2 3 5 10 -> 3
        assert snap(more)["ttfv_median_hours"] == 3.0
        # value_event = profile_completed: nobody qualifies
        assert snap(more, value_event="profile_completed")["ttfv_median_hours"] is None
        # a fractional result: 1.5 h
        assert (
            snap([pe("signup", "x", at(hours=-3)), pe("key_action", "x", at(hours=-1.5))])[
                "ttfv_median_hours"
            ]
            == 1.5
        )

    def test_funnel(self) -> None:
        def step(user: str, name: str, ts: str) -> bytes:
            return pe("onboarding_step", user, ts, props={"step": name})

        lines = [
            pe("signup", "f1", "2026-11-10T00:00:00Z"),
            step("f1", "welcome", "2026-11-10T00:00:00Z"),  # at S: counts
            step("f1", "profile", "2026-11-10T01:00:00Z"),
            step("f1", "invite", "2026-11-10T02:00:00Z"),
            pe("signup", "f2", "2026-11-11T00:00:00Z"),
            step("f2", "welcome", "2026-11-11T00:00:01Z"),
            step("f2", "invite", "2026-11-11T00:00:02Z"),
            pe("signup", "f3", "2026-11-12T00:00:00Z"),
            step("f3", "welcome", "2026-11-11T23:59:59Z"),  # before S
            step("f3", "tour", "2026-11-12T05:00:00Z"),
            pe("signup", "f4", "2026-10-01T00:00:00Z"),  # S outside (T-30d, T]
            step("f4", "welcome", "2026-10-01T00:00:00Z"),
            pe("signup", "f5", "2026-11-20T11:00:00Z"),
            step("f5", "done", "2026-11-20T13:00:00Z"),  # after T
            step("f6", "welcome", "2026-11-20T11:00:00Z"),  # no signup
        ]
        out = snap(lines)
        assert out["funnel_reached"] == {
            "welcome": 2,
            "profile": 1,
            "invite": 2,
            "tour": 1,
            "done": 0,
        }
        assert out["funnel_dropoff_pct"] == {
            "welcome": 50.0,
            "profile": -100.0,
            "invite": 50.0,
            "tour": 100.0,
        }
        out = snap(lines, funnel_steps=["tour", "done", "nothing"])
        assert out["funnel_reached"] == {"tour": 1, "done": 0, "nothing": 0}
        assert out["funnel_dropoff_pct"] == {"tour": 100.0, "done": None}

    def test_retention_utc(self) -> None:
        # D0 = Nov 20. d1 cohort: Nov 12..18; d7: Nov 6..12; d30: Oct 14..20.
        lines = [
            pe("signup", "w1", "2026-11-06T10:00:00Z"),
            pe("page_view", "w1", "2026-11-13T23:00:00Z", session_id="s"),  # d7 retained
            pe("signup", "w1", "2026-11-15T10:00:00Z"),  # a later signup moves nothing
            pe("signup", "w2", "2026-11-12T23:00:00Z"),
            pe("page_view", "w2", "2026-11-19T00:30:00Z", session_id="s"),  # d7 retained
            pe("signup", "w3", "2026-11-13T00:00:00Z"),  # d1 cohort only, not retained
            pe("signup", "w4", "2026-11-05T12:00:00Z"),  # no cohort
            pe("page_view", "w4", "2026-11-12T12:00:00Z", session_id="s"),
            pe("signup", "w5", "2026-11-10T12:00:00Z"),  # d7 cohort
            pe("page_view", "w5", "2026-11-18T12:00:00Z", session_id="s"),  # day +8: no
            pe("signup", "m1", "2026-10-14T00:00:00Z"),
            pe("key_action", "m1", "2026-11-13T23:59:59Z"),  # day +30
            pe("signup", "m2", "2026-10-20T23:59:59Z"),
            pe("key_action", "m2", "2026-11-19T00:00:00Z"),  # day +30
            pe("signup", "m3", "2026-10-13T23:59:59Z"),  # D0-38: no cohort
            pe("key_action", "m3", "2026-11-12T12:00:00Z"),
        ]
        out = snap(lines)
        # d1: cohort w2 (Nov 12), w3 (Nov 13) [w5 is Nov 10: no] -> w2 active Nov 13? no;
        # w3 active Nov 14? no -> 0/2
        assert out["d1_retention_pct"] == 0.0
        # d7: cohort w1 (Nov 6), w2 (Nov 12), w5 (Nov 10) -> w1 yes, w2 yes, w5 no -> 2/3
        assert out["d7_retention_pct"] == pytest.approx(200 / 3)
        assert out["d30_retention_pct"] == 100.0

    def test_retention_new_york(self) -> None:
        as_of = "2026-11-02T05:30:00Z"  # D0 = Nov 2 in New York; d1 cohort Oct 25..Oct 31
        lines = [
            pe("signup", "r1", "2026-10-31T03:30:00Z"),  # Oct 30 23:30 EDT
            pe("key_action", "r1", "2026-11-01T03:59:00Z"),  # Oct 31 23:59 EDT: retained
            pe("signup", "r2", "2026-10-31T04:30:00Z"),  # Oct 31 00:30 EDT
            pe("key_action", "r2", "2026-11-02T04:30:00Z"),  # Nov 1 23:30 EST: retained
            pe("signup", "r3", "2026-10-31T12:00:00Z"),  # Oct 31
            pe("key_action", "r3", "2026-11-02T05:10:00Z"),  # Nov 2 00:10 EST: not
            pe("signup", "r4", "2026-11-01T12:00:00Z"),  # Nov 1 = D0-1: no cohort
        ]
        ny = snap(lines, as_of, timezone="America/New_York")
        assert ny["d1_retention_pct"] == pytest.approx(200 / 3)
        # UTC: D0 = Nov 2, cohort Oct 25..31 = r1 r2 r3 (all Oct 31 UTC); next day Nov 1:
        # r1 (03:59Z Nov 1) yes; r2 (Nov 2) no; r3 no -> 1/3
        utc = snap(lines, as_of)
        assert utc["d1_retention_pct"] == pytest.approx(100 / 3)

    def test_youngest_mature_day_early_in_d0(self) -> None:
        # T = Nov 20 00:30Z. Signup Nov 13 00:10Z is in the cohort (D0-7); its week ends
        # Nov 20 00:10Z < T, key_action at 00:20 Nov 20 is after the week.
        as_of = "2026-11-20T00:30:00Z"
        lines = [
            pe("signup", "y", "2026-11-13T00:10:00Z"),
            pe("profile_completed", "y", "2026-11-13T00:11:00Z"),
            pe("key_action", "y", "2026-11-20T00:20:00Z"),
        ]
        assert snap(lines, as_of)["first_week_activation_pct"] == 0.0
        # S = Nov 13 23:00 -> week ends Nov 20 23:00 > T: key_action by T counts
        lines = [
            pe("signup", "y", "2026-11-13T23:00:00Z"),
            pe("profile_completed", "y", "2026-11-13T23:11:00Z"),
            pe("key_action", "y", "2026-11-20T00:20:00Z"),
            pe("key_action", "z", "2026-11-20T00:40:00Z"),  # nobody else
        ]
        assert snap(lines, as_of)["first_week_activation_pct"] == 100.0


# ---------------------------------------------------------------------------------------------
# Surveys
# ---------------------------------------------------------------------------------------------


class TestSurveys:
    def test_surveys_and_touchpoints(self) -> None:
        lines = [
            sa("csat", 5, "u1", at(minutes=-30), touchpoint="web"),
            sa("csat", 2, "u2", at(hours=-2), touchpoint="support"),
            sa("csat", 4, "u3", at(days=-3)),
            sa("csat", 1, "u4", at(days=-10)),
            sa("csat", 1, "u5", at(hours=-1)),  # exactly T-1h
            sa("nps", 10, "u1", at(days=-1), touchpoint="web"),  # exactly T-24h
            sa("nps", 9, "u2", at(days=-2)),
            sa("nps", 7, "u3", at(days=-3)),
            sa("nps", 0, "u4", at(days=-5)),
            sa("nps", 6, "u5", at(days=-20)),
            sa("nps", 10, "u6", at(days=-31), touchpoint="old"),
            line(ans("nps", 0, "u7", at(minutes=1)), topic=SURVEY, record_ts=ms(T)),
            sa("ces", 3, "u1", at(days=-1)),
            sa("ces", 4, "u2", at(days=-6)),
            sa("ces", 7, "u3", at(days=-8)),
        ]
        out = snap(lines)
        # csat 1h: {5} -> 100; 24h: {5, 2, 1} -> 1/3; 7d: {5, 2, 4, 1} -> 2/4
        assert out["csat_pct_1h"] == 100.0
        assert out["csat_pct_24h"] == pytest.approx(100 / 3)
        assert out["csat_pct_7d"] == 50.0
        assert out["csat_responses_24h"] == 3
        # nps 7d: 10 9 7 0 -> (2-1)/4; 30d adds 6 -> (2-2)/5
        assert out["nps_7d"] == 25.0
        assert out["nps_30d"] == 0.0
        assert out["nps_responses_30d"] == 5
        assert out["ces_avg_7d"] == 3.5
        assert out["ces_avg_30d"] == pytest.approx(14 / 3)
        web = {
            "csat_pct_1h": 100.0,
            "csat_pct_24h": 100.0,
            "csat_pct_7d": 100.0,
            "csat_responses_24h": 1,
            "nps_7d": 100.0,
            "nps_30d": 100.0,
            "nps_responses_30d": 1,
            "ces_avg_7d": None,
            "ces_avg_30d": None,
        }
        support = {
            "csat_pct_1h": None,
            "csat_pct_24h": 0.0,
            "csat_pct_7d": 0.0,
            "csat_responses_24h": 1,
            "nps_7d": None,
            "nps_30d": None,
            "nps_responses_30d": 0,
            "ces_avg_7d": None,
            "ces_avg_30d": None,
        }
        assert out["by_touchpoint"] == {"web": web, "support": support}
        # signals: csat 1-2 in 24h: 2 (T-2h) and 1 (T-1h); in 1h: none (T-1h is out);
        # nps detractors in 24h: none (0 at T-5d, 0 after T)
        assert out["churn_signals_24h"] == {
            "cancellation": 0,
            "nps_detractor": 0,
            "csat_negative": 2,
            "dormant": 0,
        }
        assert out["churn_signals_1h"]["csat_negative"] == 0


# ---------------------------------------------------------------------------------------------
# Subscription churn and commerce
# ---------------------------------------------------------------------------------------------


class TestChurnAndCommerce:
    LINES: ClassVar[list[bytes]] = [
        # T-30d = 2026-10-21T12:00Z
        pe("subscription_started", "c1", "2026-10-01T00:00:00Z"),
        pe("subscription_started", "c2", "2026-10-01T00:00:00Z"),
        pe("subscription_cancelled", "c2", "2026-11-01T00:00:00Z"),
        pe("subscription_started", "p", "2026-10-21T12:00:00Z", account_id="c3"),
        pe("subscription_started", "c4", "2026-11-10T00:00:00Z"),
        pe("subscription_started", "c5", "2026-10-05T00:00:00Z"),
        pe("subscription_cancelled", "c5", "2026-10-05T00:00:00Z"),  # tie: cancel wins
        pe("subscription_started", "c5", "2026-11-15T00:00:00Z"),
        pe("subscription_started", "c6", "2026-10-01T00:00:00Z"),
        line(ev("subscription_cancelled", "c6", at(minutes=10)), record_ts=ms(T)),
        pe("subscription_cancelled", "c7", "2026-10-10T00:00:00Z"),
        pe("subscription_started", "c7", "2026-10-02T00:00:00Z"),  # arrives later, older ts
        pe("subscription_cancelled", "c8", at(minutes=-30)),
        # orders
        pe("purchase", "c1", at(days=-1), props={"order_id": "o1", "amount": 100.0}),
        pe("purchase", "c4", at(days=-2), props={"order_id": "o2", "amount": 50.5}),
        pe("purchase", "c4", at(days=-3), props={"order_id": "o3", "amount": 49.5}),
        pe("purchase", "c4", at(days=-3), props={"order_id": "o2", "amount": 999}),  # dup order
        pe("purchase", "c2", at(days=-60), props={"order_id": "o4", "amount": 30}),
        pe("purchase", "c2", at(days=-91), props={"order_id": "o5", "amount": 1000}),  # out
        pe("return", "c4", at(days=-1), props={"order_id": "o2"}),
        pe("return", "c4", at(hours=-1), props={"order_id": "o2"}),  # same order again
        pe("return", "c9", at(days=-5), props={"order_id": "zz"}),  # purchase never seen
        pe("return", "c2", at(days=-95), props={"order_id": "o5"}),  # first return: out
        pe("return", "c2", at(days=-1), props={"order_id": "o5"}),
    ]

    def test_churn(self) -> None:
        out = snap(self.LINES)
        # start {c1 c2 c3 c6}; end {c1 c3 c4 c5 c6}; lost {c2}; new {c4 c5}
        assert out["subscribers"] == 5
        assert out["churn_rate_pct_30d"] == 25.0
        assert out["retention_rate_pct_30d"] == 75.0
        # cancellation at T-30min (c8); c6's is after T
        assert out["churn_signals_1h"]["cancellation"] == 1
        assert out["churn_signals_24h"]["cancellation"] == 1

    def test_commerce(self) -> None:
        out = snap(self.LINES)
        # 90d orders: o1 100, o2 50.5, o3 49.5, o4 30 -> 4 orders, 230
        assert out["orders_90d"] == 4
        assert out["revenue_90d"] == 230.0
        assert out["aov_90d"] == 57.5
        # customers c1 (1), c4 (2), c2 (1) -> 1/3
        assert out["repeat_purchase_rate_pct_90d"] == pytest.approx(100 / 3)
        # returns: (c4,o2) at T-1d, (c9,zz) at T-5d; (c2,o5)'s first is at T-95d -> 2/4
        assert out["return_rate_pct_90d"] == 50.0
        # 30d: revenue 200 over c1 and c4 = 100 per customer; churn 25% -> 400
        assert out["clv_estimate"] == 400.0

    def test_no_orders(self) -> None:
        out = snap([pe("return", "u", at(hours=-1), props={"order_id": "o"})])
        assert out["orders_90d"] == 0 and out["revenue_90d"] == 0.0
        assert out["aov_90d"] is None and out["return_rate_pct_90d"] is None
        assert out["repeat_purchase_rate_pct_90d"] is None and out["clv_estimate"] is None
        assert out["churn_rate_pct_30d"] is None and out["subscribers"] == 0

    def test_order_first_after_t_does_not_exist(self) -> None:
        lines = [
            line(
                ev("purchase", "u", at(minutes=30), props={"order_id": "o", "amount": 5}),
                record_ts=ms(T),
            ),
            pe("purchase", "u", at(hours=-1), props={"order_id": "o", "amount": 7}),
            pe("purchase", "u", at(hours=-1), props={"order_id": "p", "amount": 1}, account_id="a"),
        ]
        out = snap(lines)
        assert out["orders_90d"] == 1 and out["revenue_90d"] == 1.0


# ---------------------------------------------------------------------------------------------
# Web and support
# ---------------------------------------------------------------------------------------------


class TestWebAndSupport:
    def test_sessions(self) -> None:
        def s(etype: str, sid: str, ts: str, user: str = "u1") -> bytes:
            return pe(etype, user, ts, session_id=sid)

        lines = [
            s("session_start", "s1", at(hours=-2)),
            s("page_view", "s1", at(hours=-1, minutes=-50)),
            s("session_end", "s1", at(hours=-1)),  # 3600 s, bounce
            s("session_start", "s2", at(hours=-30)),
            s("page_view", "s2", at(hours=-29)),
            s("page_view", "s2", at(hours=-28)),
            s("session_end", "s2", at(hours=-23)),  # 25200 s
            s("session_start", "s3", at(hours=-25)),
            s("session_end", "s3", at(hours=-24)),  # exactly T-24h: not counted
            s("session_end", "s4", T),  # counted, no start, no page view
            line(ev("session_end", "u1", at(seconds=1), session_id="s5"), record_ts=ms(T)),
            s("session_end", "s5", at(hours=-1)),  # the first end is after T: not counted
            s("session_start", "s6", at(hours=-1)),
            s("session_end", "s6", at(hours=-2)),  # -3600 s
            line(ev("page_view", "u1", at(minutes=5), session_id="s6"), record_ts=ms(T)),
            line(ev("session_start", "u1", at(minutes=10), session_id="s7"), record_ts=ms(T)),
            s("session_start", "s7", at(hours=-3)),
            s("session_end", "s7", at(hours=-1)),  # counted; its start is after T
            s("session_start", "s1", at(hours=-1), user="u2"),
            s("session_end", "s1", at(minutes=-30), user="u2"),  # 1800 s
        ]
        out = snap(lines)
        # counted: u1/s1 s2 s4 s6 s7, u2/s1 = 6
        assert out["sessions_24h"] == 6
        # durations: 3600 + 25200 - 3600 + 1800 = 27000 over 4
        assert out["avg_session_duration_s_24h"] == 6750.0
        # bounce: u1/s1 only -> 1/6
        assert out["bounce_rate_pct_24h"] == pytest.approx(100 / 6)

    def test_ctr_and_social(self) -> None:
        lines = [
            *(pe("click", f"u{i}", at(hours=-1), props={}) for i in range(3)),
            pe("click", "u9", at(seconds=1), props={}),  # after T
            pe("impression", "u1", at(hours=-24), props={"placement": "p"}),  # out
            pe("impression", "u1", at(hours=-23), props={}),
            pe("impression", "u1", T, props={}),
            pe("social_interaction", "u1", at(hours=-2), props={"action": "like"}),
            pe("social_interaction", "u2", at(hours=-3), props={"action": "like"}),
            pe("social_interaction", "u2", at(hours=-3), props={"action": "share"}),
            pe("social_interaction", "u2", at(hours=-24), props={"action": "comment"}),
        ]
        out = snap(lines, inactive_events=["click", "impression"])
        assert out["ctr_pct_24h"] == 150.0
        assert out["social_interactions_24h"] == {
            "like": 2,
            "share": 1,
            "comment": 0,
            "mention": 0,
            "save": 0,
        }
        assert snap([])["ctr_pct_24h"] is None

    def test_tickets(self) -> None:
        def op(user: str, tid: str, ts: str) -> bytes:
            return pe("ticket_opened", user, ts, props={"ticket_id": tid, "category": "c"})

        def rs(user: str, tid: str, ts: str) -> bytes:
            return pe("ticket_resolved", user, ts, props={"ticket_id": tid})

        lines = [
            op("u", "k1", at(hours=-2)),
            rs("u", "k1", at(hours=-1)),  # 1 h
            op("u", "k2", at(days=-10)),
            rs("u", "k2", at(days=-6)),  # 96 h
            op("u", "k3", at(hours=-3)),  # open
            op("u", "k4", at(hours=-30)),
            line(
                ev("ticket_resolved", "u", at(hours=1), props={"ticket_id": "k4"}),
                record_ts=ms(T),
            ),  # open as of T
            rs("u", "k5", at(hours=-2)),  # never opened
            line(
                ev(
                    "ticket_opened", "u", at(minutes=10), props={"ticket_id": "k6", "category": "c"}
                ),
                record_ts=ms(T),
            ),
            op("u", "k6", at(hours=-5)),  # the first opening is after T: not seen
            op("u", "k7", at(hours=-20)),
            rs("u", "k7", at(hours=-10)),  # 10 h
            rs("u", "k7", at(hours=-5)),  # a second resolution: ignored
            op("u", "k8", at(days=-1)),  # exactly T-24h: not in the opened window
            rs("u", "k8", at(days=-2)),  # -24 h
            op("v", "k1", at(hours=-1)),  # another user's k1: open
        ]
        out = snap(lines)
        # opened in (T-24h, T]: u/k1 u/k3 u/k7 v/k1 = 4
        assert out["tickets_opened_24h"] == 4
        # open: u/k3, u/k4, v/k1
        assert out["open_tickets"] == 3
        # (1 + 96 + 10 - 24) / 4
        assert out["avg_resolution_hours_7d"] == 20.75


# ---------------------------------------------------------------------------------------------
# Customer health and dormant signals
# ---------------------------------------------------------------------------------------------


class TestHealth:
    def test_health_by_hand(self) -> None:
        lines = [
            # acme: last activity 12h before T -> recency 1 - 0.5/30 = 59/60; active days
            # Nov 20, Nov 19, Nov 10 -> frequency 3/20; latest NPS: two at the same ts, the
            # lower (3) wins -> 0.3 (the 10 after T does not count).
            # health = 100 (0.4*59/60 + 0.3*3/20 + 0.3*0.3) = 317/6
            pe("page_view", "a1", "2026-11-20T00:00:00Z", account_id="acme", session_id="s"),
            pe("page_view", "a1", "2026-11-19T12:00:00Z", account_id="acme", session_id="s"),
            pe("key_action", "a2", "2026-11-10T08:00:00Z", account_id="acme"),
            sa("nps", 8, "a1", "2026-11-19T00:00:00Z", account_id="acme"),
            sa("nps", 3, "a2", "2026-11-19T00:00:00Z", account_id="acme"),
            sa("csat", 5, "a2", "2026-11-19T06:00:00Z", account_id="acme"),
            line(
                ans("nps", 10, "a1", at(minutes=30), account_id="acme"),
                topic=SURVEY,
                record_ts=ms(T),
            ),
            # u9: an impression (not activity) and CSAT 2 -> 100 * 0.3 * 1/4 = 7.5
            pe("impression", "u9", at(hours=-1), props={}),
            sa("csat", 2, "u9", at(hours=-2)),
            # globex: activity 50 days ago -> recency 0, frequency 0, sentiment 0.5 -> 15
            pe("signup", "g1", at(days=-50), account_id="globex"),
            # g1 (no account): activity at T -> recency 1, frequency 1/20, 0.5 -> 56.5
            pe("page_view", "g1", T, session_id="s"),
            # a1 as a customer of its own (an answer without account): 0 + 0 + 0.3*0 = 0
            sa("nps", 0, "a1", at(hours=-5)),
            # not customers as of T: records after T only
            line(ev("page_view", "late", at(minutes=10), session_id="s"), record_ts=ms(T)),
        ]
        out = snap(lines)
        # at risk: u9 (7.5), globex (15), a1 (0) -> 3; mean (317/6 + 45/6 + 90/6 + 339/6 + 0)/5
        assert out["customers_at_risk"] == 3
        assert out["health_avg"] == pytest.approx(791 / 30)

    def test_frequency_caps_and_no_customer(self) -> None:
        assert snap([])["health_avg"] is None
        lines = [pe("key_action", "u", at(days=-d)) for d in range(25)]
        # 25 active days -> frequency 1; recency 1; sentiment 0.5 -> 40 + 30 + 15 = 85
        assert snap(lines)["health_avg"] == 85.0

    def test_dormant_signal(self) -> None:
        lines = [
            pe("key_action", "d1", at(days=-14, minutes=-30)),  # L+14d = T-30min: 1h and 24h
            pe("key_action", "d2", at(days=-15)),
            pe("key_action", "d2", at(days=-14, hours=-12)),  # L+14d = T-12h: 24h only
            pe("key_action", "d3", at(days=-15)),  # L+14d = T-24h: out
            pe("key_action", "d4", at(days=-14, minutes=10)),
            pe("key_action", "d4", at(days=-1)),  # active later: L+14d after T
            pe("impression", "d5", at(days=-14, minutes=10), props={}),  # not activity
            pe("key_action", "d6", at(days=-14)),  # L+14d = T exactly: in
            line(ev("key_action", "d6", at(minutes=5)), record_ts=ms(T)),  # after T: ignored
        ]
        out = snap(lines)
        assert out["churn_signals_1h"]["dormant"] == 2  # d1, d6
        assert out["churn_signals_24h"]["dormant"] == 3  # d1, d2, d6


def test_snapshot_shape() -> None:
    out = snap([], "2026-11-20T13:30:00.500+01:30")
    assert out["as_of"] == "2026-11-20T12:00:00.5Z"
    assert out["rejected"] == NO_REJECTS
    assert out["accepted"] == 0 and out["duplicates"] == 0
    assert out["lifecycle"] == {"new": 0, "returning": 0, "resurrecting": 0, "dormant": 0}
    assert out["funnel_reached"] == dict.fromkeys(
        ["welcome", "profile", "invite", "tour", "done"], 0
    )
    assert out["churn_signals_1h"] == dict.fromkeys(
        ["cancellation", "nps_detractor", "csat_negative", "dormant"], 0
    )
    assert out["feature_adoption_pct"] == {} and out["by_touchpoint"] == {}
    assert out["revenue_90d"] == 0.0 and isinstance(out["revenue_90d"], float)
