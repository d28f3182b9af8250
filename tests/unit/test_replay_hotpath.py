"""The replay hot path (`Pipeline.product_value`: product events decoded, checked and applied
inline) against the generic path (`Pipeline.record`, the one the live worker runs): the same
snapshot and the same rejects, reason and detail, on every kind of product event, valid or not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.config import Config
from streams.records import PRODUCT_EVENTS
from streams.replay import Pipeline, Replayer
from streams.timeutil import parse_as_of
from tests.unit.records_builder import ms

RTS = ms("2026-11-20T10:00:00Z")
AS_OF = "2026-11-21T10:00:00Z"

BASE: dict[str, Any] = {"event_id": "e", "user_id": "u-1", "account_id": "acct-1"}


def pv(**over: Any) -> dict[str, Any]:
    return {**BASE, "type": "page_view", "ts": "2026-11-20T10:00:00Z", "session_id": "s", **over}


def of(type_: str, **over: Any) -> dict[str, Any]:
    return {**BASE, "type": type_, "ts": "2026-11-20T09:30:00.5Z", **over}


# Values (dicts are JSON-encoded; strings are sent as they are). Each is sent under several event
# ids and record timestamps below, so duplicates and the time checks are covered too.
VALUES: list[Any] = [
    pv(),
    pv(ts="2026-11-20T10:00:00.1Z"),
    pv(ts="2026-11-20T10:00:00.123456789Z"),
    pv(ts="2026-11-20T10:00:00.1234567891Z"),  # more than 9 digits: an exact Fraction
    pv(ts="2026-11-20T10:00:00.Z"),
    pv(ts="2026-11-20T10:00:00.12a4Z"),
    pv(ts="2026-11-20t10:00:00z"),
    pv(ts="2026-11-20T11:00:00+01:00"),
    pv(ts="2026-11-20T10:00:00-00:30"),
    pv(ts="2026-11-20T24:00:00Z"),
    pv(ts="2026-11-20T10:60:00Z"),
    pv(ts="2026-02-29T10:00:00Z"),
    pv(ts="2026-11-20T10:00:00"),
    pv(ts="2026-11-20T10:00:00.000000000Z"),
    pv(ts="2026-11-20T11:00:00.001Z"),  # just over an hour ahead of RTS
    pv(ts="2026-11-20T11:00:00Z"),  # exactly an hour ahead
    pv(ts="2026-11-18T10:00:00Z"),  # exactly the lateness (48h) behind
    pv(ts="2026-11-18T09:59:59.999Z"),
    pv(ts=RTS),
    pv(ts=RTS + 3_600_001),
    pv(ts=253402300800000),
    pv(ts=-62135596800001),
    pv(ts=1.5),
    pv(ts=True),
    pv(ts=None),
    pv(session_id=None),
    pv(session_id=""),
    pv(session_id="s" * 129),
    pv(session_id="s" * 128),
    pv(user_id="u" * 129),
    pv(user_id=""),
    pv(event_id="e" * 129),
    pv(account_id=""),
    pv(account_id=None),
    pv(account_id="a" * 128),
    pv(type="Page_view"),
    pv(type="page view"),
    pv(type="x" * 65),
    pv(type="brand_new_type"),
    pv(user_id="\u00e9l\u00e8ve"),  # not ASCII
    pv(extra={"deep": [[[[[[1]]]]]]}),
    pv(extra=json.loads("[" * 63 + "]" * 63)),
    pv(extra=json.loads("[" * 64 + "]" * 64)),
    pv(extra=json.loads("[" * 70 + "]" * 70)),
    pv(extra={"a": {"b": {"c": {}}}}),
    pv(extra="x" * 70_000),  # too large
    pv(props=[1]),
    '{"event_id":"e\\u0065","type":"page_view","user_id":"u-1","ts":"2026-11-20T10:00:00Z","session_id":"s"}',
    '{"event_id":"e\\ud800","type":"page_view","user_id":"u-1","ts":"2026-11-20T10:00:00Z","session_id":"s"}',
    '{"event_id":"e","type":"page_view","user_id":"u-1","ts":"2026-11-20T10:00:00Z","session_id":"s","x":"\\ud800"}',
    '{"event_id":"e","type":"page_view","user_id":"u-2","user_id":"u-1","ts":"2026-11-20T10:00:00Z","session_id":"s"}',
    '{"event_id":"e","type":"page_view","user_id":"u-1","ts":"2026-11-20T10:00:00Z","session_id":"s"',
    '{"event_id":"e","type":"page_view","user_id":"u-1","ts":"2026-11-20T10:00:00Z","session_id":"s","n":1e400}',
    "[]",
    "null",
    "",
    of("session_start", session_id="s"),
    of("session_end", session_id="s"),
    of("session_end"),
    of("impression"),
    of("impression", props={"placement": "home"}),
    of("impression", props={"placement": None}),
    of("impression", props={"placement": ""}),
    of("impression", props={"placement": 3}),
    of("click", props={}),
    of("click", props={"placement": "p" * 129}),
    of("onboarding_step", props={"step": "welcome"}),
    of("onboarding_step", props={"step": "not_a_step"}),
    of("onboarding_step", props={"step": ""}),
    of("onboarding_step", props={}),
    of("onboarding_step"),
    of("feature_used", props={"feature": "search"}),
    of("feature_used", props={"feature": "f" * 129}),
    of("feature_used", props={"feature": 1}),
    of("social_interaction", props={"action": "like"}),
    of("social_interaction", props={"action": "poke"}),
    of("social_interaction", props={}),
    of("social_interaction"),
    of("purchase", props={"order_id": "o1", "amount": 12.5}),
    of("purchase", props={"order_id": "o1", "amount": 10}),
    of("purchase", props={"order_id": "o2", "amount": -1}),
    of("purchase", props={"order_id": "o3"}),
    of("return", props={"order_id": "o1"}),
    of("return", props={}),
    of("ticket_opened", props={"ticket_id": "t1", "category": "billing"}),
    of("ticket_opened", props={"ticket_id": "t2"}),
    of("ticket_resolved", props={"ticket_id": "t1"}),
    of("ticket_resolved", props={"ticket_id": None}),
    of("signup"),
    of("profile_completed"),
    of("key_action"),
    of("subscription_started"),
    of("subscription_cancelled"),
    of("custom_thing", props={"anything": [1, {"x": None}]}),
]


def lines() -> list[bytes]:
    out: list[bytes] = []
    offset = 0
    for i, value in enumerate(VALUES):
        payload = value if isinstance(value, str) else json.dumps(value)
        # each value twice under its own event id (the second is a duplicate), once under a
        # shared id, at two record timestamps, with an offset so redelivery is exercised too
        for eid, rts in ((f"e{i}", RTS), (f"e{i}", RTS), ("same", RTS), (f"f{i}", RTS + 10)):
            body = payload.replace('"event_id": "e"', f'"event_id": "{eid}"')
            env = {"topic": PRODUCT_EVENTS, "partition": 0, "offset": offset, "ts": rts}
            out.append(json.dumps({**env, "key": "u-1", "payload": body}).encode())
            offset += 1
        out.append(out[-1])  # a redelivery
    return out


def replay(
    hot: bool, partitions: int
) -> tuple[dict[str, Any], list[tuple[Any, ...]], int, list[str]]:
    rejects: list[tuple[Any, ...]] = []
    r = Replayer(
        Config(),
        parse_as_of(AS_OF),
        partitions,
        on_reject=lambda *a: rejects.append(a),
    )
    slow: list[str] = []
    p = r.pipeline
    generic = p.record

    def record(
        topic: str, key: Any, value: Any, rts: int, part: Any = None, off: Any = None
    ) -> None:
        slow.append(value)
        generic(topic, key, value, rts, part, off)

    p.record = record  # type: ignore[method-assign,assignment]
    if not hot:  # every product event through the generic path, as before the hot path
        p.product_value = lambda key, value, rts, part=None, off=None: record(  # type: ignore[method-assign,assignment]
            PRODUCT_EVENTS, key, value, rts, part, off
        )
    r.feed(lines())
    return r.snapshot(), rejects, r.pipeline.redelivered, slow


@pytest.mark.parametrize("partitions", [1, 3])
def test_hot_path_equals_the_generic_path(partitions: int) -> None:
    hot_snap, hot_rejects, hot_redelivered, slow = replay(True, partitions)
    ref_snap, ref_rejects, ref_redelivered, everything = replay(False, partitions)
    assert hot_snap == ref_snap
    assert hot_rejects == ref_rejects
    assert hot_redelivered == ref_redelivered == len(VALUES)
    # the comparison is not vacuous: many records were accepted, rejected and deduplicated,
    # and many product events were decided on the hot path
    assert ref_snap["accepted"] > 50
    assert ref_snap["duplicates"] > 50
    assert sum(ref_snap["rejected"].values()) > 50
    assert set(ref_snap["rejected"]) == {"too_large", "bad_json", "schema", "future", "too_late"}
    assert all(n > 0 for n in ref_snap["rejected"].values())
    assert len(everything) - len(slow) > 100  # decided on the hot path alone


def test_a_plain_event_never_leaves_the_hot_path() -> None:
    r = Replayer(Config(), parse_as_of(AS_OF))
    slow: list[Any] = []
    generic = r.pipeline.record

    def record(*a: Any) -> None:
        slow.append(a)
        generic(*a)

    r.pipeline.record = record  # type: ignore[method-assign,assignment]
    for i in range(3):
        value = pv(event_id=f"x{i}", ts=f"2026-11-20T10:00:0{i}.25Z")
        r.line(
            json.dumps({"topic": PRODUCT_EVENTS, "ts": RTS, "payload": json.dumps(value)}).encode()
        )
    assert len(slow) <= 1  # at most the first of a type this process had not seen yet
    snap = r.snapshot()
    assert (snap["accepted"], snap["dau"], snap["wau"], snap["mau"]) == (3, 0, 1, 1)


def test_pipeline_product_value_is_record() -> None:
    """The method as the live code would call it: the same partition state either way."""
    value = json.dumps(pv(event_id="z", ts="2026-11-20T09:59:59.5Z"))
    a = Pipeline(Config(), 2, fold_limit=parse_as_of(AS_OF))
    b = Pipeline(Config(), 2, fold_limit=parse_as_of(AS_OF))
    a.product_value("u-1", value, RTS)
    b.record(PRODUCT_EVENTS, "u-1", value, RTS)
    t = parse_as_of(AS_OF)
    assert a.snapshot(t) == b.snapshot(t)
    assert [len(p.users) for p in a.users] == [len(p.users) for p in b.users]
    assert sum(p.accepted for p in a.users) == 1
