"""Stage 3, accounts: a Faust agent on `<app>-account-facts` that keeps customer state.

Each message is a list of account facts from one user partition's micro-batch, or a forget
request passed on by the users stage. Facts are applied once each (by their source offset,
streams/live.py `LiveAccountPartition`); the changes join the partition's epoch
(agents/epoch.py), and the customers they touched are queued for health publishing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from agents.epoch import EpochCommitter, Stored
from agents.forget import (
    RECEIPT_SECONDS,
    Tombstones,
    drop_forgotten_facts,
    receipt_value,
    user_hash,
)
from streams.codec import (
    ForgetRequest,
    decode_account,
    decode_account_meta,
    decode_facts_message,
    encode_account,
    encode_account_meta,
)
from streams.config import Config
from streams.live import LiveAccountPartition, missing
from streams.timeutil import Instant

if TYPE_CHECKING:
    from agents.runtime import Runtime

log = logging.getLogger("engagement.worker")


def load_account_partition(
    config: Config,
    p: int,
    stored: Stored,
    fold_limit: Instant | None,
    cls: Any = LiveAccountPartition,
) -> tuple[LiveAccountPartition, Tombstones | None]:
    """An account partition as its table holds it, and its tombstones; `cls` as for
    agents.users.load_user_partition."""
    meta = decode_account_meta(stored.meta) if stored.meta is not None else None
    from_encoded = getattr(cls, "from_encoded", None)
    part = None
    if from_encoded is not None:
        part = from_encoded(config, p, stored.entities, meta, fold_limit)
    if part is None:
        if stored.meta is not None:  # the attempt may have set fields of it: start again
            meta = decode_account_meta(stored.meta)
        part = cls(
            config,
            p,
            accounts={c: decode_account(v) for c, v in stored.entities.items()},
            meta=meta,
            fold_limit=fold_limit,
        )
    part.meta.event_offset = stored.applied
    tombs = Tombstones.loads(stored.tombstones) if stored.tombstones is not None else None
    return part, tombs


class AccountsStage:
    def __init__(self, worker: Runtime, epochs: EpochCommitter) -> None:
        self.w = worker
        self.epochs = epochs
        self.tombs_dirty: set[int] = set()
        # the Redis work (health entry removal, receipt) of forgets whose epoch is committed
        self.forget_redis: list[tuple[str, str, int]] = []

    async def agent(self, stream: Any) -> None:
        async for event in stream.noack().events():
            await self.message(event.message.partition, event.message.offset, event.value, event)

    async def message(self, p: int, offset: int, value: bytes, event: Any) -> None:
        w = self.w
        async with w.lock(("accounts", p)):
            part = w.acct_part(p)
            gap = missing(part.meta.event_offset, offset)
            if gap:
                log.warning("accounts %d: re-reading skipped messages %s", p, gap)
                for off, val in await w.read_internal(w.names.account_facts, p, gap):
                    self.apply(p, part, off, val)
            self.apply(p, part, offset, value)
            if event is not None:
                self.epochs.epoch(p).events.append(event)
            if self.epochs.due(p):
                self.close(p)
        if self.forget_redis:
            await self.forget_in_redis()

    def close(self, p: int) -> None:
        part = self.w.acct_parts.get(p)
        if part is None:
            return
        tombs = self.w.acct_tombs.get(p) if p in self.tombs_dirty else None
        self.tombs_dirty.discard(p)
        self.epochs.close(
            p,
            part.accounts,
            encode_account,
            encode_account_meta(part.meta),
            tombs.dumps() if tombs is not None else None,
        )

    def apply(self, p: int, part: LiveAccountPartition, offset: int, value: bytes) -> None:
        w = self.w
        ep = self.epochs.epoch(p)
        ep.touched = True
        part.engine.fold_limit = w.now() - part.engine.margin
        tombs = w.acct_tombs.get(p)
        # the compiled core reads a facts message itself (None: a forget request, the Python
        # engine, or a value it does not hold: decoded here)
        dirty = None if tombs else part.apply_encoded(value, offset)
        if dirty is not None:
            self.applied(p, part, ep, offset, dirty)
            return
        message = decode_facts_message(value)
        if isinstance(message, ForgetRequest):
            customer, request_id = message
            a = part.accounts.pop(customer, None)
            tombs = w.acct_tombs.setdefault(p, Tombstones())
            tombs.add(user_hash(customer), dict(a.offs or {}) if a is not None else {})
            self.tombs_dirty.add(p)
            ep.keys.add(customer)
            # the Redis part once the forget is durable
            ep.after.append(lambda: self.forget_redis.append((customer, request_id, p)))
            facts: list[Any] = []
        else:
            facts = drop_forgotten_facts(tombs, message) if tombs else message
        dirty = part.apply(facts, offset)  # expiry included (customers are never removed)
        self.applied(p, part, ep, offset, dirty)

    def applied(
        self, p: int, part: LiveAccountPartition, ep: Any, offset: int, dirty: set[str]
    ) -> None:
        """A message applied: the customers it changed join the epoch and the health queue."""
        if offset > part.meta.event_offset:
            part.meta.event_offset = offset
        ep.marker = part.meta.event_offset
        ep.keys |= dirty
        if dirty:
            self.w.health_pending.setdefault(p, set()).update(dirty)

    async def forget_in_redis(self) -> None:
        """Remove forgotten customers' health entries from Redis and write the receipts the
        `engagement forget` command waits for; on a Redis error they stay pending (retried with
        the next message or heartbeat) and processing goes on."""
        w = self.w
        zkey, hkey = w.names.health_keys()
        try:
            r = await w.get_redis()
            lock = w.health_pub.lock if w.health_pub is not None else asyncio.Lock()
            async with lock:  # a health chunk computed before the delete is written first
                while self.forget_redis:
                    customer, request_id, p = self.forget_redis[0]
                    pipe = r.pipeline(transaction=True)
                    pipe.zrem(zkey, customer)
                    pipe.hdel(hkey, customer)
                    if request_id:
                        pipe.set(
                            w.names.receipt_key(request_id), receipt_value(p), ex=RECEIPT_SECONDS
                        )
                    await pipe.execute()
                    self.forget_redis.pop(0)
        except Exception as exc:
            log.warning("forget: cannot update Redis (%s); retrying with the next message", exc)
