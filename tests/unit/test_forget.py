"""The pure parts of `engagement forget`: the control message is a micro-batch the worker
decodes, and tombstones drop exactly the forgotten entity's records at or below its offsets."""

from __future__ import annotations

import json

from agents.forget import (
    FORGET_TOPIC,
    Tombstones,
    drop_forgotten_facts,
    drop_forgotten_records,
    forget_message,
    user_hash,
)
from streams.codec import decode_batch


def _rec(offset: int, user: str) -> tuple[int, int, bytes, bytes]:
    body = {"event_id": f"e{offset}", "type": "page_view", "user_id": user, "ts": 1}
    return (offset, 1000, user.encode(), json.dumps(body).encode())


def test_the_control_message_is_a_micro_batch() -> None:
    b = decode_batch(forget_message("u-é", "req1"))
    assert b.topic == FORGET_TOPIC
    assert b.records == [(0, 0, "u-é".encode(), b"req1")]


def test_records_at_or_below_the_tombstone_are_dropped_only_for_that_user() -> None:
    t = Tombstones()
    t.add(user_hash("u-a"), {("product-events", 0): 10})
    recs = [_rec(9, "u-a"), _rec(10, "u-a"), _rec(11, "u-a"), _rec(5, "u-b"),
            (7, 1000, b"k", b"{not json"), (8, 1000, b"k", None)]  # fmt: skip
    kept = drop_forgotten_records(t, "product-events", 0, recs)
    assert [r[0] for r in kept] == [11, 5, 7, 8]
    # another source partition is not covered
    assert len(drop_forgotten_records(t, "product-events", 1, recs)) == len(recs)


def test_tombstones_survive_their_encoding_and_merge() -> None:
    t = Tombstones()
    t.add(user_hash("u-a"), {("product-events", 0): 10, ("survey-answers", 2): 3})
    t.add(user_hash("u-a"), {("product-events", 0): 7})  # an older mark never lowers it
    back = Tombstones.loads(t.dumps())
    assert back.entries == {user_hash("u-a"): {("product-events", 0): 10, ("survey-answers", 2): 3}}
    assert back.covers(("survey-answers", 2), 3) and not back.covers(("survey-answers", 2), 4)
    assert "u-a" not in repr(back.entries)  # only the hash is kept


def test_account_facts_of_a_forgotten_customer_are_dropped() -> None:
    t = Tombstones()
    t.add(user_hash("u-a"), {("product-events", 0, 1): 10})
    fact = ("u-a", 5, 5, True, 0, 0.0, "product-events", 0, 10, 1)
    later = ("u-a", 5, 5, True, 0, 0.0, "product-events", 0, 11, 1)
    other = ("acme", 5, 5, True, 0, 0.0, "product-events", 0, 9, 1)
    via_other = ("u-a", 5, 5, True, 0, 0.0, "product-events", 0, 9, 2)
    assert drop_forgotten_facts(t, [fact, later, other, via_other]) == [later, other, via_other]
