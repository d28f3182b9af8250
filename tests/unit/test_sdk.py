"""The producer SDK's builders and client-side validation (streams/sdk.py).

Expected values come from the catalogue (docs/metrics.md §1), not from the code: each builder
must make the value the catalogue describes, and a value the engine rejects must be refused by
the SDK with the engine's reason and message.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from streams import sdk
from streams.config import Config
from streams.errors import Reject
from streams.records import decode_product, decode_survey
from streams.recordspec import KNOWN_TYPES
from streams.replay import replay_lines

RTS = 1_795_168_800_000  # 2026-11-20T10:00:00Z
KW: dict[str, Any] = {"ts": "2026-11-20T10:00:00Z", "record_ts": RTS}


def value(rec: sdk.Record) -> dict[str, Any]:
    return dict(json.loads(rec.value))


@pytest.mark.parametrize(
    ("rec", "expected"),
    [
        (sdk.signup("u-1", account_id="acme", event_id="e1", **KW),
         {"type": "signup", "account_id": "acme"}),
        (sdk.profile_completed("u-1", event_id="e1", **KW), {"type": "profile_completed"}),
        (sdk.key_action("u-1", event_id="e1", **KW), {"type": "key_action"}),
        (sdk.onboarding_step("u-1", "welcome", event_id="e1", **KW),
         {"type": "onboarding_step", "props": {"step": "welcome"}}),
        (sdk.feature_used("u-1", "export", event_id="e1", **KW),
         {"type": "feature_used", "props": {"feature": "export"}}),
        (sdk.session_start("u-1", "s-1", event_id="e1", **KW),
         {"type": "session_start", "session_id": "s-1"}),
        (sdk.session_end("u-1", "s-1", event_id="e1", **KW),
         {"type": "session_end", "session_id": "s-1"}),
        (sdk.page_view("u-1", "s-1", path="/home", event_id="e1", **KW),
         {"type": "page_view", "session_id": "s-1", "props": {"path": "/home"}}),
        (sdk.click("u-1", event_id="e1", **KW), {"type": "click"}),
        (sdk.impression("u-1", "hero", event_id="e1", **KW),
         {"type": "impression", "props": {"placement": "hero"}}),
        (sdk.purchase("u-1", "o-1", 19.9, event_id="e1", **KW),
         {"type": "purchase", "props": {"order_id": "o-1", "amount": 19.9}}),
        (sdk.order_return("u-1", "o-1", event_id="e1", **KW),
         {"type": "return", "props": {"order_id": "o-1"}}),
        (sdk.subscription_started("u-1", event_id="e1", **KW), {"type": "subscription_started"}),
        (sdk.subscription_cancelled("u-1", event_id="e1", **KW),
         {"type": "subscription_cancelled"}),
        (sdk.ticket_opened("u-1", "t-1", "billing", event_id="e1", **KW),
         {"type": "ticket_opened", "props": {"ticket_id": "t-1", "category": "billing"}}),
        (sdk.ticket_resolved("u-1", "t-1", event_id="e1", **KW),
         {"type": "ticket_resolved", "props": {"ticket_id": "t-1"}}),
        (sdk.social_interaction("u-1", "share", event_id="e1", **KW),
         {"type": "social_interaction", "props": {"action": "share"}}),
        (sdk.event("video_watched", "u-1", event_id="e1", props={"s": 3}, **KW),
         {"type": "video_watched", "props": {"s": 3}}),
    ],
)  # fmt: skip
def test_event_builders_make_the_catalogue_records(
    rec: sdk.Record, expected: dict[str, Any]
) -> None:
    assert rec.topic == "product-events"
    assert rec.key == b"u-1"  # keyed by user id
    assert rec.timestamp_ms == RTS
    v = value(rec)
    assert v == {"event_id": "e1", "user_id": "u-1", "ts": "2026-11-20T10:00:00Z", **expected}
    decode_product(rec.value)  # the engine accepts it


@pytest.mark.parametrize(
    ("rec", "survey", "score"),
    [
        (sdk.csat("u-1", 4, response_id="r1", **KW), "csat", 4),
        (sdk.nps("u-1", 0, response_id="r1", **KW), "nps", 0),
        (sdk.ces("u-1", 7, response_id="r1", **KW), "ces", 7),
    ],
)
def test_survey_builders(rec: sdk.Record, survey: str, score: int) -> None:
    assert (rec.topic, rec.key) == ("survey-answers", b"u-1")
    assert value(rec) == {"response_id": "r1", "survey": survey, "score": score,
                          "user_id": "u-1", "ts": "2026-11-20T10:00:00Z"}  # fmt: skip
    decode_survey(rec.value)


def test_a_builder_for_every_type_with_a_meaning() -> None:
    assert set(sdk.BUILDERS) == set(KNOWN_TYPES)


def test_defaults_ids_are_unique_and_ts_is_the_record_timestamp() -> None:
    a, b = sdk.signup("u-1", record_ts=RTS), sdk.signup("u-1", record_ts=RTS)
    assert value(a)["event_id"] != value(b)["event_id"]
    assert value(a)["ts"] == RTS
    now = sdk.signup("u-1")  # now, by the producer's clock
    assert abs(now.timestamp_ms - datetime.now(UTC).timestamp() * 1000) < 60_000
    assert value(now)["ts"] == now.timestamp_ms


def test_datetime_ts() -> None:
    paris = timezone(timedelta(hours=1))
    rec = sdk.signup(
        "u-1", ts=datetime(2026, 11, 20, 11, 0, 0, 250000, tzinfo=paris), record_ts=RTS
    )
    assert value(rec)["ts"] == "2026-11-20T10:00:00.250000Z"
    with pytest.raises(ValueError, match="time zone"):
        sdk.signup("u-1", ts=datetime(2026, 11, 20, 11, 0), record_ts=RTS)  # noqa: DTZ001


# Invalid values: the SDK refuses them with the engine's reason AND message.
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("product-events", {"event_id": "e", "type": "Bad Type", "user_id": "u", "ts": RTS}, "schema"),
    ("product-events", {"event_id": "e", "type": "page_view", "user_id": "u", "ts": RTS}, "schema"),
    ("product-events", {"event_id": "e", "type": "purchase", "user_id": "u", "ts": RTS,
                        "props": {"order_id": "o", "amount": -1}}, "schema"),
    ("product-events", {"event_id": "e", "type": "social_interaction", "user_id": "u", "ts": RTS,
                        "props": {"action": "poke"}}, "schema"),
    ("product-events", {"event_id": "e", "type": "signup", "user_id": "u" * 129, "ts": RTS}, "schema"),
    ("product-events", {"event_id": "e", "type": "signup", "user_id": "u",
                        "ts": "2026-11-20 10:00:00Z"}, "schema"),
    ("product-events", {"event_id": "e", "type": "signup", "user_id": "u", "ts": RTS,
                        "props": {"x": float("nan")}}, "bad_json"),
    ("product-events", {"event_id": "\ud800", "type": "signup", "user_id": "u", "ts": RTS}, "bad_json"),
    ("product-events", {"event_id": "e", "type": "signup", "user_id": "u", "ts": RTS,
                        "props": {"pad": "x" * 70_000}}, "too_large"),
    ("survey-answers", {"response_id": "r", "survey": "nps", "score": 11, "user_id": "u", "ts": RTS}, "schema"),
    ("survey-answers", {"response_id": "r", "survey": "csat", "score": 4.0, "user_id": "u", "ts": RTS}, "schema"),
    ("survey-answers", {"response_id": "r", "survey": "nps", "score": "9", "user_id": "u", "ts": RTS}, "schema"),
]  # fmt: skip


@pytest.mark.parametrize(("topic", "v", "reason"), BAD)
def test_validation_gives_the_engines_reason_and_message(
    topic: str, v: dict[str, Any], reason: str
) -> None:
    with pytest.raises(Reject) as sdk_error:
        sdk.validate(topic, v, RTS)
    assert sdk_error.value.reason == reason
    data = json.dumps(v, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")
    with pytest.raises(Reject) as engine_error:
        (decode_product if topic == "product-events" else decode_survey)(data)
    assert (sdk_error.value.reason, str(sdk_error.value)) == (
        engine_error.value.reason,
        str(engine_error.value),
    )


def test_builders_refuse_what_the_engine_rejects() -> None:
    with pytest.raises(Reject, match=r"^schema: purchase needs props.amount"):
        sdk.purchase("u-1", "o-1", -5, **KW)
    with pytest.raises(Reject, match=r"^schema: nps score must be an integer 0-10$"):
        sdk.nps("u-1", 11, **KW)
    with pytest.raises(Reject, match=r"^schema: social_interaction needs props.action"):
        sdk.social_interaction("u-1", "poke", **KW)
    with pytest.raises(Reject, match=r"^schema: page_view needs session_id"):
        sdk.event("page_view", "u-1", **KW)


@pytest.mark.parametrize(
    ("ts_ms", "reason"),
    [
        (RTS + 3_600_000, None),  # 1 h ahead: still fine
        (RTS + 3_600_001, "future"),
        (RTS - 48 * 3_600_000, None),  # exactly the allowed lateness
        (RTS - 48 * 3_600_000 - 1, "too_late"),
    ],
)
def test_time_checks_against_the_record_timestamp(ts_ms: int, reason: str | None) -> None:
    if reason is None:
        sdk.key_action("u-1", ts=ts_ms, record_ts=RTS)
    else:
        with pytest.raises(Reject) as err:
            sdk.key_action("u-1", ts=ts_ms, record_ts=RTS)
        assert err.value.reason == reason
    # a longer allowed lateness (the workers' configuration) moves the too_late bound
    sdk.key_action("u-1", ts=RTS - 49 * 3_600_000, record_ts=RTS, lateness_hours=72)


def test_a_record_is_counted_by_the_engine_as_built() -> None:
    """Records of the SDK, written as a replay file, are accepted and counted once each."""
    t0 = "2026-11-20T09:00:00Z"
    recs = [
        sdk.signup("u-1", ts=t0, record_ts=RTS, event_id="s1", account_id="acme"),
        sdk.page_view("u-1", "s-1", ts="2026-11-20T09:30:00Z", record_ts=RTS),
        sdk.purchase("u-2", "o-9", 30, ts="2026-11-20T09:40:00Z", record_ts=RTS),
        sdk.nps("u-2", 10, ts="2026-11-20T09:50:00Z", record_ts=RTS),
    ]
    lines = [json.dumps(r.envelope()).encode() for r in recs]
    snap = replay_lines(lines, Config(), "2026-11-20T10:00:00Z")
    assert (snap["accepted"], snap["duplicates"], sum(snap["rejected"].values())) == (4, 0, 0)
    assert snap["dau"] == 2 and snap["orders_90d"] == 1 and snap["revenue_90d"] == 30.0
    assert snap["nps_7d"] == 100.0


def test_the_key_is_the_user_id_in_utf8() -> None:
    rec = sdk.signup("ü-42", **KW)
    assert rec.key == "ü-42".encode() and rec.user_id == "ü-42"
    assert rec.envelope() == {"topic": "product-events", "ts": RTS, "key": "ü-42",
                              "payload": rec.value.decode()}  # fmt: skip
