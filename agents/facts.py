"""The account facts a user partition makes, sent once per epoch, and what they hold back of
/snapshot's coverage.

Each micro-batch of the users stage makes facts for up to every account partition. Sent at
once, they were one `<app>-account-facts` message per micro-batch and account partition (at
20,000 records/s about 880 messages a second), and the accounts stage pays Faust's per-event
cost on each. They now wait in the user partition's open epoch and go out when it closes,
one message per account partition (or earlier, when FLUSH_FACTS are waiting): the same facts
in the same order, so the accounts' state is the same; a customer's facts reach its partition
up to one epoch later.

The epoch protocol is unchanged: an epoch's facts are sent before it closes and are among its
side outputs, acknowledged before its state is written (agents/epoch.py). A forget request
sends the partition's waiting facts first, so that a customer's forget never overtakes its
facts.

Coverage (agents/coverage.py) means every record up to an offset is counted, and `engagement
snapshot --wait` then waits for the account facts topic's end: a record counts only once the
facts it made are acknowledged. While a user partition has facts waiting or unacknowledged,
its coverage is the offsets its applied records had when its last acknowledged facts were
sent (or before its first waiting ones), not the partition's current ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from streams.live import Fact

# facts waiting in one user partition that are sent before its epoch closes
FLUSH_FACTS = 5_000

# a user partition's offsets per source: {(topic, source partition): last offset applied}
Offsets = dict[tuple[str, int], int]


class PendingFacts:
    """The user partitions' facts not sent yet, and the coverage they hold back."""

    def __init__(self) -> None:
        self.unsent: dict[int, dict[int, list[Fact]]] = {}
        self.count: dict[int, int] = {}
        # user partition -> the offsets whose records' facts are all acknowledged (absent:
        # every fact of the partition is acknowledged, its current offsets hold)
        self.held: dict[int, Offsets] = {}
        self.sent_gen: dict[int, int] = {}  # sendings per partition
        self.acked_gen: dict[int, int] = {}  # the newest sending acknowledged
        self.owner: dict[int, Any] = {}  # the partition object of the sendings

    def add(self, p: int, before: Offsets | None, facts: dict[int, list[Fact]]) -> bool:
        """Facts of a micro-batch of partition p (per account partition); `before`: the
        partition's offsets before the micro-batch (None when p already holds some back).
        True when FLUSH_FACTS or more are waiting."""
        if not facts:
            return False
        if p not in self.held and before is not None:
            self.held[p] = before
        waiting = self.unsent.setdefault(p, {})
        n = self.count.get(p, 0)
        for q, fs in facts.items():
            waiting.setdefault(q, []).extend(fs)
            n += len(fs)
        self.count[p] = n
        return n >= FLUSH_FACTS

    def holds(self, p: int) -> bool:
        return p in self.held

    def take(self, p: int) -> dict[int, list[Fact]]:
        """Partition p's waiting facts, per account partition (removed)."""
        self.count.pop(p, None)
        return self.unsent.pop(p, None) or {}

    def sent(self, p: int, acks: list[Awaitable[Any]], offsets: Offsets, owner: Any) -> None:
        """p's facts up to `offsets` were sent; once `acks` are all done, its coverage moves
        up to them (to its current offsets when nothing is waiting or in flight). `owner`:
        the partition object, whose replacement (a reload) voids this."""
        gen = self.sent_gen[p] = self.sent_gen.get(p, 0) + 1

        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled() or f.exception() is not None:
                return  # the epoch cannot commit: the worker stops, its input is read again
            if gen <= self.acked_gen.get(p, 0) or self.owner.get(p) is not owner:
                return
            self.acked_gen[p] = gen
            if gen == self.sent_gen.get(p) and p not in self.unsent:
                self.held.pop(p, None)
            else:
                self.held[p] = offsets

        self.owner[p] = owner
        asyncio.gather(*acks).add_done_callback(done)

    def offsets(self, p: int, current: Offsets) -> Offsets:
        """What partition p counts of its sources for coverage: `current` (its applied
        offsets) unless facts hold it back."""
        return self.held.get(p, current)

    def drop(self) -> None:
        """Forget every partition (they were revoked: their epochs are flushed)."""
        for d in (self.unsent, self.count, self.held, self.sent_gen, self.acked_gen, self.owner):
            d.clear()
