"""Tiny builders of replay lines for hand-computed engine tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def ms(iso: str) -> int:
    """Epoch milliseconds of an ISO instant (with offset)."""
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def line(topic: str, value: Any, record_ts: int, key: str | None = None, **env: Any) -> bytes:
    payload = value if isinstance(value, str) else json.dumps(value)
    d = {"topic": topic, "ts": record_ts, "key": key, "payload": payload, **env}
    return json.dumps(d).encode()


def ev(
    eid: str, type_: str, user: str, ts: str, rts: str | int | None = None, **fields: Any
) -> bytes:
    """A product-events line; the record ts defaults to the event ts."""
    value = {"event_id": eid, "type": type_, "user_id": user, "ts": ts, **fields}
    record_ts = ms(ts) if rts is None else (rts if isinstance(rts, int) else ms(rts))
    return line("product-events", value, record_ts, key=user)


def ans(
    rid: str, survey: str, score: int, user: str, ts: str, rts: str | None = None, **fields: Any
) -> bytes:
    value = {
        "response_id": rid,
        "survey": survey,
        "score": score,
        "user_id": user,
        "ts": ts,
        **fields,
    }
    return line("survey-answers", value, ms(rts or ts), key=user)


def now_utc() -> datetime:  # pragma: no cover - only for ad-hoc debugging
    return datetime.now(UTC)
