"""What the stages, the HTTP views and the health publisher use of the worker, as Protocols.

agents/worker.py builds the Faust app and the stages and hands itself to them; they depend on
these Protocols, not on the worker class, so the imports run one way (worker -> stages) and a
test can hand them a small stand-in (tests/unit/test_epoch.py runs the real stages so).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from agents.delays import DelayHistogram
from agents.forget import Tombstones
from agents.internal import Names
from agents.settings import Settings
from streams.live import LiveAccountPartition, LiveUserPartition
from streams.timeutil import Instant


class Runtime(Protocol):
    """The worker as its stages (intake, users, accounts), /snapshot gathering and the health
    publisher see it: settings and names, the Faust app (its producer), the clock, the state of
    the partitions it owns, and a few services."""

    s: Settings
    P: int
    names: Names
    app: Any
    input_names: dict[str, str]
    stats: dict[str, Any]
    delays: DelayHistogram  # record timestamp -> applied (agents/delays.py)
    user_parts: dict[int, LiveUserPartition]
    acct_parts: dict[int, LiveAccountPartition]
    # user partition -> (the partition object, what it forwarded lately: agents/coverage.py
    # RecentForwards, which reads this Protocol)
    recent_forwards: dict[int, tuple[Any, Any]]
    user_tombs: dict[int, Tombstones]
    acct_tombs: dict[int, Tombstones]
    # customers whose health must be re-published (agents/health.py drains it)
    health_pending: dict[int, set[str]]
    health_pub: Any
    # (topic, source partition, records) -> the micro-batch messages of `<app>-batches`: the
    # compiled core's writer, or streams/codec.py `encode_batches` (the same bytes)
    encode_batches: Callable[[str, int, list[Any]], list[bytes]]

    def now(self) -> Instant: ...

    def lock(self, key: tuple[str, int]) -> asyncio.Lock: ...

    def user_part(self, p: int) -> LiveUserPartition: ...

    def acct_part(self, p: int) -> LiveAccountPartition: ...

    def assigned(self) -> tuple[set[int], set[int]]: ...

    async def read_internal(
        self, topic: str, p: int, offsets: range
    ) -> list[tuple[int, bytes]]: ...

    async def get_redis(self) -> Any: ...


class Endpoints(Protocol):
    """The worker as its HTTP views (agents/views.py) see it."""

    app: Any

    def parse_as_of(self, raw: str | None) -> Instant: ...

    async def gather(self, t: Instant) -> tuple[int, dict[str, Any]]: ...

    def local_partials(self, t: Instant) -> dict[str, Any]: ...

    def health(self) -> dict[str, Any]: ...

    def metrics_text(self) -> tuple[bytes, str]: ...
