"""Erasing a user (GDPR): the control messages and the tombstones the worker keeps.

`engagement forget USER` (engagement_cli/cmd_forget.py) writes a *forget* control micro-batch to the
partition of `<app>-batches` that owns the user, so the change happens where Faust allows table
writes: inside the users agent's stream, in the owning partition. The users agent then
(agents/worker.py):

1. deletes the user's state (memory and table: a changelog tombstone);
2. keeps a *tombstone*: the SHA-256 of the user id with, per source topic-partition, the last
   offset it had counted. A record of that user at or below those offsets is dropped before the
   engine sees it, so a redelivery (after a crash, a rebalance or a skipped message re-read)
   cannot bring the user back; a record *after* them is new data and counts;
3. sends the same control message to the account partition that owns the customer named like the
   user (records without `account_id` belong to the customer `user_id`), whose agent deletes that
   customer's state, keeps a tombstone of it the same way, removes its health score from Redis
   and writes a receipt `{prefix}{app_id}:forget:{request id}` that the command waits for.

Tombstones hold a hash, never the id; they live in the tables under `\\x00forgot:<partition>`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from typing import Any

from streams.codec import decode_tombstones, encode_batch, encode_tombstones
from streams.live import Batch

# the `topic` of a forget control micro-batch; its records are (0, 0, user id, request id)
FORGET_TOPIC = "\x00forget"
RECEIPT_SECONDS = 7 * 86400


def user_hash(user_id: str) -> str:
    return hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()


def forget_message(user_id: str, request_id: str) -> bytes:
    """The control micro-batch of `<app>-batches` that asks the users stage to forget a user."""
    rec = (0, 0, user_id.encode("utf-8", "surrogatepass"), request_id.encode())
    return encode_batch(Batch(FORGET_TOPIC, 0, [rec]))


def receipt_key(prefix: str, app_id: str, request_id: str) -> str:
    from agents.internal import Names

    return Names(prefix, app_id).receipt_key(request_id)


def receipt_value(account_partition: int) -> str:
    return json.dumps(
        {"done_at": round(time.time(), 3), "account_partition": account_partition},
        sort_keys=True,
    )


class Tombstones:
    """Forgotten entities of one partition: hash -> {source key -> last offset forgotten}.

    A source key is (topic, partition) for users and (topic, partition, user partition) for
    customers, the keys of `UserState.offs` / `AccountState.offs`."""

    def __init__(self, entries: dict[str, dict[Any, int]] | None = None) -> None:
        self.entries: dict[str, dict[Any, int]] = entries or {}
        self._max: dict[Any, int] = {}
        for offs in self.entries.values():
            self._widen(offs)

    def _widen(self, offs: dict[Any, int]) -> None:
        for k, o in offs.items():
            if o > self._max.get(k, -1):
                self._max[k] = o

    def __bool__(self) -> bool:
        return bool(self.entries)

    def add(self, h: str, offs: dict[Any, int]) -> None:
        cur = self.entries.setdefault(h, {})
        for k, o in offs.items():
            if o > cur.get(k, -1):
                cur[k] = o
        self._widen(cur)

    def covers(self, key: Any, offset: int) -> bool:
        """Whether any tombstone may hold (key, offset): the cheap test before hashing."""
        return offset <= self._max.get(key, -1)

    def holds(self, entity: str, key: Any, offset: int) -> bool:
        e = self.entries.get(user_hash(entity))
        return e is not None and offset <= e.get(key, -1)

    def dumps(self) -> bytes:
        return encode_tombstones(self.entries)

    @classmethod
    def loads(cls, data: bytes) -> Tombstones:
        return cls(decode_tombstones(data))


def _user_of(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        obj = json.loads(value)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    uid = obj.get("user_id") if isinstance(obj, dict) else None
    return uid if isinstance(uid, str) else None


def drop_forgotten_records(
    tombs: Tombstones, topic: str, partition: int, records: list[Any]
) -> list[Any]:
    """The records of a micro-batch without those of forgotten users at or below their
    tombstone (such a record was counted before the forget: dropping it changes no count)."""
    key = (topic, partition)
    out = []
    for r in records:
        if tombs.covers(key, r[0]):
            uid = _user_of(r[3])
            if uid is not None and tombs.holds(uid, key, r[0]):
                continue
        out.append(r)
    return out


def drop_forgotten_facts(tombs: Tombstones, facts: Iterable[Any]) -> list[Any]:
    """Account facts without those of forgotten customers at or below their tombstone."""
    out = []
    for f in facts:
        key = (f[6], f[7], f[9])
        if tombs.covers(key, f[8]) and tombs.holds(f[0], key, f[8]):
            continue
        out.append(f)
    return out
