"""The producer SDK, pure part: typed builders of both input records and client-side validation.

A builder returns a `Record` (topic, key, value bytes, record timestamp) that the engine will
accept, or raises `Reject` - the engine's own error - with the reason and message the worker
would give (`schema: purchase needs props.amount, a finite number >= 0`, `too_late`, ...):
validation runs the engine's decoder (engagement_sdk.records, which the worker runs too) on the
exact bytes that will be sent, then the time checks against the record timestamp. Sending is
engagement_sdk.producer's job.

    import engagement_sdk as sdk
    rec = sdk.purchase("u-42", order_id="o-1", amount=19.9, account_id="acme")
    rec = sdk.nps("u-42", 9, touchpoint="support")
    rec = sdk.event("video_watched", "u-42", props={"seconds": 31})   # a custom activity event

Defaults: `event_id`/`response_id` a random UUID (a retried send keeps its id, so the engine
counts it once); `ts` the record timestamp; the record timestamp now (what Kafka's CreateTime
means: when the record was produced). A historical `ts` is `too_late` against a record timestamp of now: give
`record_ts` (epoch ms) for a backfill (docs/decisions.md, "Producer SDK").

The clock is read only where a default needs it (`now_ms`), so tests pass explicit instants.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engagement_sdk.errors import Reject
from engagement_sdk.records import decode_product, decode_survey, time_reason
from engagement_sdk.recordspec import PRODUCT_EVENTS, SURVEY_ANSWERS, SURVEYS
from engagement_sdk.timeutil import MS

__all__ = [
    "BACKFILL_HINT",
    "BUILDERS",
    "DEFAULT_LATENESS_HOURS",
    "PRODUCT_EVENTS",
    "SURVEY_ANSWERS",
    "SURVEY_BUILDERS",
    "Record",
    "Reject",
    "Ts",
    "ces",
    "click",
    "csat",
    "encode",
    "event",
    "feature_used",
    "format_ts",
    "impression",
    "key_action",
    "make_record",
    "now_ms",
    "nps",
    "onboarding_step",
    "order_return",
    "page_view",
    "profile_completed",
    "purchase",
    "session_end",
    "session_start",
    "signup",
    "social_interaction",
    "subscription_cancelled",
    "subscription_started",
    "survey_answer",
    "ticket_opened",
    "ticket_resolved",
    "validate",
]

DEFAULT_LATENESS_HOURS = 48.0
BACKFILL_HINT = "for a backfill, set the record timestamp near ts"
Ts = int | str | datetime


def now_ms() -> int:
    """The producer's clock, in epoch milliseconds."""
    return time.time_ns() // MS


@dataclass(frozen=True, slots=True)
class Record:
    """A record ready for Kafka: `topic` is the base name (the producer adds its prefix)."""

    topic: str
    key: bytes
    value: bytes
    timestamp_ms: int

    @property
    def user_id(self) -> str:
        return self.key.decode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        """The value as a dict (for printing)."""
        return dict(json.loads(self.value))

    def envelope(self) -> dict[str, Any]:
        """The kcat-style line of this record (`engagement replay` / `engagement load`)."""
        return {
            "topic": self.topic,
            "ts": self.timestamp_ms,
            "key": self.user_id,
            "payload": self.value.decode("utf-8"),
        }


def format_ts(ts: Ts) -> int | str:
    """A `ts` as it goes on the wire: an int (epoch ms) or a string as given; an aware datetime
    becomes RFC 3339 in UTC. A naive datetime is refused (its instant is unknown)."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError("a naive datetime has no instant: give it a time zone (tzinfo)")
        return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return ts


def encode(value: Mapping[str, Any]) -> bytes:
    """The UTF-8 JSON bytes of a value, exactly as they are sent. Nothing is refused here (a NaN
    or a lone surrogate is encoded as is) so that `validate` gives the engine's own verdict."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


def validate(
    topic: str,
    value: bytes | str | Mapping[str, Any],
    record_ts_ms: int | None = None,
    lateness_hours: float = DEFAULT_LATENESS_HOURS,
) -> None:
    """Raise `Reject` (reason, message) exactly as the engine would for this value; with a
    record timestamp, the `future` and `too_late` checks too. Returns None when it is valid."""
    data = encode(value) if isinstance(value, Mapping) else value
    if topic == PRODUCT_EVENTS:
        _, inst = decode_product(data)
    elif topic == SURVEY_ANSWERS:
        _, inst = decode_survey(data)
    else:
        raise ValueError(f"unknown input topic {topic!r}: {PRODUCT_EVENTS} or {SURVEY_ANSWERS}")
    if record_ts_ms is not None:
        lateness_ns = int(lateness_hours * 3600) * 10**9
        reason = time_reason(inst, record_ts_ms, lateness_ns)
        if reason == "future":
            raise Reject(reason, "ts is more than 1 hour after the record timestamp")
        if reason == "too_late":
            raise Reject(
                reason,
                f"ts is more than {lateness_hours:g} hours before the record timestamp "
                f"({BACKFILL_HINT})",
            )


def make_record(
    topic: str,
    value: Mapping[str, Any],
    record_ts: int | None = None,
    lateness_hours: float = DEFAULT_LATENESS_HOURS,
) -> Record:
    """Validate `value` and wrap it: key = its user_id, timestamp = `record_ts` or now."""
    data = encode(value)
    rts = now_ms() if record_ts is None else record_ts
    validate(topic, data, rts, lateness_hours)
    return Record(topic, str(value["user_id"]).encode("utf-8"), data, rts)


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def event(
    type: str,
    user_id: str,
    *,
    event_id: str | None = None,
    ts: Ts | None = None,
    account_id: str | None = None,
    session_id: str | None = None,
    props: Mapping[str, Any] | None = None,
    record_ts: int | None = None,
    lateness_hours: float = DEFAULT_LATENESS_HOURS,
    extra: Mapping[str, Any] | None = None,
) -> Record:
    """A product event of any type (custom types included); `extra`: more top-level fields."""
    rts = now_ms() if record_ts is None else record_ts
    value = _clean(
        {
            "event_id": event_id or f"e-{uuid.uuid4()}",
            "type": type,
            "user_id": user_id,
            "ts": format_ts(rts if ts is None else ts),
            "account_id": account_id,
            "session_id": session_id,
            "props": None if props is None else dict(props),
        }
    )
    for k, v in (extra or {}).items():
        value.setdefault(k, v)
    return make_record(PRODUCT_EVENTS, value, rts, lateness_hours)


def survey_answer(
    survey: str,
    score: int,
    user_id: str,
    *,
    response_id: str | None = None,
    ts: Ts | None = None,
    account_id: str | None = None,
    touchpoint: str | None = None,
    comment: str | None = None,
    record_ts: int | None = None,
    lateness_hours: float = DEFAULT_LATENESS_HOURS,
) -> Record:
    """A survey answer: `survey` is csat (1-5), nps (0-10) or ces (1-7)."""
    rts = now_ms() if record_ts is None else record_ts
    value = _clean(
        {
            "response_id": response_id or f"r-{uuid.uuid4()}",
            "survey": survey,
            "score": score,
            "user_id": user_id,
            "ts": format_ts(rts if ts is None else ts),
            "account_id": account_id,
            "touchpoint": touchpoint,
            "comment": comment,
        }
    )
    return make_record(SURVEY_ANSWERS, value, rts, lateness_hours)


# ---- typed builders: one per event type with a meaning in the catalogue ----------------------
# Each takes the same keyword arguments as `event` (event_id, ts, account_id, props, record_ts,
# ...); the type's required fields are positional or named parameters.


def _with(props: Mapping[str, Any] | None, **fields: Any) -> dict[str, Any]:
    out = dict(props or {})
    out.update({k: v for k, v in fields.items() if v is not None})
    return out


def signup(user_id: str, **kw: Any) -> Record:
    return event("signup", user_id, **kw)


def profile_completed(user_id: str, **kw: Any) -> Record:
    return event("profile_completed", user_id, **kw)


def key_action(user_id: str, **kw: Any) -> Record:
    return event("key_action", user_id, **kw)


def onboarding_step(user_id: str, step: str, **kw: Any) -> Record:
    return event("onboarding_step", user_id, props=_with(kw.pop("props", None), step=step), **kw)


def feature_used(user_id: str, feature: str, **kw: Any) -> Record:
    return event("feature_used", user_id, props=_with(kw.pop("props", None), feature=feature), **kw)


def session_start(user_id: str, session_id: str, **kw: Any) -> Record:
    return event("session_start", user_id, session_id=session_id, **kw)


def session_end(user_id: str, session_id: str, **kw: Any) -> Record:
    return event("session_end", user_id, session_id=session_id, **kw)


def page_view(user_id: str, session_id: str, path: str | None = None, **kw: Any) -> Record:
    props = _with(kw.pop("props", None), path=path)
    return event("page_view", user_id, session_id=session_id, props=props or None, **kw)


def click(user_id: str, placement: str | None = None, **kw: Any) -> Record:
    props = _with(kw.pop("props", None), placement=placement)
    return event("click", user_id, props=props or None, **kw)


def impression(user_id: str, placement: str | None = None, **kw: Any) -> Record:
    props = _with(kw.pop("props", None), placement=placement)
    return event("impression", user_id, props=props or None, **kw)


def purchase(user_id: str, order_id: str, amount: float, **kw: Any) -> Record:
    props = _with(kw.pop("props", None), order_id=order_id, amount=amount)
    return event("purchase", user_id, props=props, **kw)


def order_return(user_id: str, order_id: str, **kw: Any) -> Record:
    """A `return` event (an order returned)."""
    return event("return", user_id, props=_with(kw.pop("props", None), order_id=order_id), **kw)


def subscription_started(user_id: str, **kw: Any) -> Record:
    return event("subscription_started", user_id, **kw)


def subscription_cancelled(user_id: str, **kw: Any) -> Record:
    return event("subscription_cancelled", user_id, **kw)


def ticket_opened(user_id: str, ticket_id: str, category: str, **kw: Any) -> Record:
    props = _with(kw.pop("props", None), ticket_id=ticket_id, category=category)
    return event("ticket_opened", user_id, props=props, **kw)


def ticket_resolved(user_id: str, ticket_id: str, **kw: Any) -> Record:
    props = _with(kw.pop("props", None), ticket_id=ticket_id)
    return event("ticket_resolved", user_id, props=props, **kw)


def social_interaction(user_id: str, action: str, **kw: Any) -> Record:
    """`action`: like, share, comment, mention or save."""
    props = _with(kw.pop("props", None), action=action)
    return event("social_interaction", user_id, props=props, **kw)


def csat(user_id: str, score: int, **kw: Any) -> Record:
    """A CSAT answer, 1-5 (4 and 5 are positive)."""
    return survey_answer("csat", score, user_id, **kw)


def nps(user_id: str, score: int, **kw: Any) -> Record:
    """An NPS answer, 0-10 (9-10 promoters, 0-6 detractors)."""
    return survey_answer("nps", score, user_id, **kw)


def ces(user_id: str, score: int, **kw: Any) -> Record:
    """A CES answer, 1-7."""
    return survey_answer("ces", score, user_id, **kw)


BUILDERS = {
    "signup": signup,
    "profile_completed": profile_completed,
    "key_action": key_action,
    "onboarding_step": onboarding_step,
    "feature_used": feature_used,
    "session_start": session_start,
    "session_end": session_end,
    "page_view": page_view,
    "click": click,
    "impression": impression,
    "purchase": purchase,
    "return": order_return,
    "subscription_started": subscription_started,
    "subscription_cancelled": subscription_cancelled,
    "ticket_opened": ticket_opened,
    "ticket_resolved": ticket_resolved,
    "social_interaction": social_interaction,
}
SURVEY_BUILDERS = {"csat": csat, "nps": nps, "ces": ces}
assert set(SURVEY_BUILDERS) == set(SURVEYS)
