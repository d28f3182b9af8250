"""Customer health in Redis: one score per customer, kept current as records arrive and as time
passes (docs/metrics.md, "Customer health").

Keys, per deployment (`{topic prefix}{app id}`, like the worker registry):
- `{prefix}{app_id}:health`: a sorted set, member = customer, score = health (0-100);
- `{prefix}{app_id}:health:parts`: a hash, customer -> JSON
  `{"as_of", "frequency", "health", "recency", "sentiment"}` (the score and its parts at T).

Every worker publishes the customers of the account partitions it owns, at T = its clock:
- every second it drains `worker.health_pending` (customers whose state changed) and publishes
  any account partition it has newly taken over (a rebalance moves customers between workers;
  the new owner republishes them all);
- every ENGAGEMENT_HEALTH_REFRESH_SECONDS (default 60) it recomputes every owned customer, as
  recency decays with time alone, in chunks that yield to the event loop.
Publishing takes at most a quarter of the event loop's time (`DUTY`): after a run of either
timer that published for d seconds, both rest for 3 d (the customers that change meanwhile stay
pending). With a million customers a backlog changes most of them between two ticks, and
publishing each took more of the worker than the records did; customer health is
fresh within seconds at the demo's scale and within tens of seconds after a big backlog.

Writes are absolute values only (ZADD, HSET in one MULTI/EXEC per chunk), never increments, so
re-publishing is harmless. Customers are never forgotten by the engine, so nothing is deleted.
A Redis error is logged and retried at the next tick; processing never waits for Redis.

At the threshold the score agrees with `customers_at_risk` of the snapshot: when the float
health is within 1e-6 of 40, the exact decision (streams.engine.health_at_risk) picks 40.0 or
the largest float below 40 as the published score, so `ZRANGEBYSCORE -inf (40` lists exactly
the customers the snapshot counts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from streams.engine import customer_health, health_at_risk
from streams.errors import ConfigError
from streams.state import AccountState
from streams.timeutil import DayCalc, Instant, format_instant

if TYPE_CHECKING:
    from faust.web import Request, Response, View

    from agents.runtime import Runtime
    from streams.live import LiveAccountPartition

log = logging.getLogger("engagement.health")

ENV_REFRESH = "ENGAGEMENT_HEALTH_REFRESH_SECONDS"
DEFAULT_REFRESH_SECONDS = 60.0
ENV_PUBLISH = "ENGAGEMENT_HEALTH_PUBLISH_SECONDS"
# 5 s, not 1 s: at 20,000 records/s over 30,000 customers nearly every customer changes every
# second, and publishing each of them every second took a tenth of the live worker's main
# thread; once per 5 s took the worker from 42 to 37 CPU-us a record (bench/RESULTS.md,
# 2026-12-06). A health score decays over days: 5 s is fresh for the people reading it.
DEFAULT_PUBLISH_SECONDS = 5.0
CHUNK = 1000  # customers per Redis transaction (and per slice of event-loop time)
DUTY = 0.25  # the share of the event loop's time the timers may spend publishing
AT_RISK_BELOW = 40
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
_BELOW_40 = math.nextafter(float(AT_RISK_BELOW), 0.0)


def health_keys(prefix: str, app_id: str) -> tuple[str, str]:
    """(sorted set, parts hash) of a deployment (agents/internal.py names them)."""
    from agents.internal import Names

    return Names(prefix, app_id).health_keys()


def refresh_seconds(env: Mapping[str, str] | None = None) -> float:
    """The full-refresh period from ENGAGEMENT_HEALTH_REFRESH_SECONDS (default 60)."""
    return _seconds(ENV_REFRESH, DEFAULT_REFRESH_SECONDS, env)


def publish_seconds(env: Mapping[str, str] | None = None) -> float:
    """How often the customers whose state changed are published, from
    ENGAGEMENT_HEALTH_PUBLISH_SECONDS (default 5)."""
    return _seconds(ENV_PUBLISH, DEFAULT_PUBLISH_SECONDS, env)


def _seconds(name: str, default: float, env: Mapping[str, str] | None) -> float:
    env = os.environ if env is None else env
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a number of seconds > 0, got {raw!r}")
    return value


def health_entry(
    a: AccountState, t: Instant, daycalc: DayCalc, as_of: str | None = None
) -> tuple[float, str] | None:
    """(score, parts JSON) of a customer at T; None when the customer does not exist yet.
    `as_of` is format_instant(t), when the caller has it already."""
    if a.first > t:
        return None
    h, recency, frequency, sentiment = customer_health(a, t, daycalc)
    at_risk = health_at_risk(a, t, daycalc, h) if abs(h - AT_RISK_BELOW) < 1e-6 else h < 40
    as_of = format_instant(t) if as_of is None else as_of
    return entry_of(h, recency, frequency, sentiment, at_risk, as_of)


def entry_of(
    h: float, recency: float, frequency: float, sentiment: float, at_risk: bool, as_of: str
) -> tuple[float, str]:
    """(score, parts JSON) of a customer whose health parts are computed (`health_entry`, or
    the compiled core's `health_entries`); `at_risk` decided exactly."""
    if abs(h - AT_RISK_BELOW) < 1e-6:  # the same decision as the snapshot's customers_at_risk
        if at_risk and h >= AT_RISK_BELOW:
            h = _BELOW_40
        elif not at_risk and h < AT_RISK_BELOW:
            h = float(AT_RISK_BELOW)
    if math.isfinite(h + recency + frequency + sentiment):
        # what json.dumps(sort_keys, compact) writes (it writes floats by repr), without
        # building a dict: one of these per changed customer every second
        return h, (
            f'{{"as_of":{json.dumps(as_of)},"frequency":{frequency!r},"health":{h!r},'
            f'"recency":{recency!r},"sentiment":{sentiment!r}}}'
        )
    parts = {
        "as_of": as_of,
        "frequency": frequency,
        "health": h,
        "recency": recency,
        "sentiment": sentiment,
    }
    return h, json.dumps(parts, sort_keys=True, separators=(",", ":"))


class HealthPublisher:
    """Publishes the health of the customers of a worker's account partitions to Redis."""

    def __init__(
        self, worker: Runtime, chunk: int = CHUNK, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.w = worker
        self.chunk = chunk
        self.clock = clock
        self.busy = 0.0  # seconds spent publishing since the last rest began
        self.rest_until = 0.0
        self.zkey, self.hkey = health_keys(worker.s.topics.prefix, worker.s.app_id)
        # account partition -> the partition object whose customers were all published
        self.published: dict[int, LiveAccountPartition] = {}
        self.lock = asyncio.Lock()  # one chunk at a time: a newer value is never overwritten
        self._failing = False

    # ---- timers --------------------------------------------------------------------------

    async def paced_tick(self) -> None:
        """`tick`, unless resting (`DUTY`)."""
        if self.clock() >= self.rest_until:
            await self.tick()
            self.rest()

    async def paced_refresh(self) -> None:
        """`refresh_tick`, unless resting (`DUTY`)."""
        if self.clock() >= self.rest_until:
            await self.refresh_tick()
            self.rest()

    def rest(self) -> None:
        """After publishing for `busy` seconds, none for busy * (1 / DUTY - 1)."""
        self.rest_until = self.clock() + self.busy * (1 / DUTY - 1)
        self.busy = 0.0

    async def tick(self) -> None:
        """Every second: partitions newly taken over, then the customers that changed."""
        try:
            await self.adopt()
            await self.drain()
        except Exception as exc:
            self._failed(exc)

    async def refresh_tick(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:
            self._failed(exc)

    # ---- work ----------------------------------------------------------------------------

    async def adopt(self) -> None:
        """Publish every customer of each account partition not yet published by this worker
        (assigned at startup or by a rebalance, or reloaded)."""
        parts = self.w.acct_parts
        for p in [p for p in self.published if p not in parts]:
            del self.published[p]
        for p, part in sorted(parts.items()):
            if self.published.get(p) is not part:
                await self.publish_partition(part)
                self.published[p] = part

    async def drain(self) -> None:
        """Publish the customers in `worker.health_pending`; on error they stay pending."""
        pending = self.w.health_pending
        if not pending:
            return
        taken = sorted(pending.items())
        pending.clear()
        for j, (p, customers) in enumerate(taken):
            part = self.w.acct_parts.get(p)
            if part is None:
                continue  # no longer ours: the new owner publishes its customers
            todo = sorted(customers)
            for i in range(0, len(todo), self.chunk):
                try:
                    await self.publish(part, todo[i : i + self.chunk])
                except Exception:
                    pending.setdefault(p, set()).update(todo[i:])
                    for q, rest in taken[j + 1 :]:
                        if q in self.w.acct_parts:
                            pending.setdefault(q, set()).update(rest)
                    raise
                await asyncio.sleep(0)

    async def refresh(self) -> None:
        """Recompute every owned customer (recency decays as time passes)."""
        for _p, part in sorted(self.w.acct_parts.items()):
            await self.publish_partition(part)

    async def publish_partition(self, part: LiveAccountPartition) -> None:
        customers = list(part.accounts)
        for i in range(0, len(customers), self.chunk):
            if self.w.acct_parts.get(part.partition) is not part:
                return  # revoked meanwhile
            await self.publish(part, customers[i : i + self.chunk])
            await asyncio.sleep(0)

    async def publish(self, part: LiveAccountPartition, customers: Iterable[str]) -> int:
        """Publish some customers of one partition at T = now (one MULTI/EXEC)."""
        async with self.lock:
            began = self.clock()
            try:
                return await self._publish(part, customers)
            finally:
                self.busy += self.clock() - began

    async def _publish(self, part: LiveAccountPartition, customers: Iterable[str]) -> int:
        t = self.w.now()
        as_of = format_instant(t)
        scores: dict[str, float] = {}
        parts: dict[str, str] = {}
        # the compiled core computes them without a Python object per customer
        entries = getattr(part, "health_entries", None)
        rows = entries(customers, t) if entries is not None else None
        if rows is not None:
            for c, h, recency, frequency, sentiment, at_risk in rows:
                scores[c], parts[c] = entry_of(h, recency, frequency, sentiment, at_risk, as_of)
        else:
            self._entries_in_python(part, customers, t, as_of, scores, parts)
        if not scores or self.w.acct_parts.get(part.partition) is not part:
            return 0
        r = await self.w.get_redis()

        pipe = r.pipeline(transaction=True)
        pipe.zadd(self.zkey, scores)
        pipe.hset(self.hkey, mapping=parts)
        await pipe.execute()
        if self._failing:
            self._failing = False
            log.info("health: publishing to Redis again")
        return len(scores)

    @staticmethod
    def _entries_in_python(
        part: LiveAccountPartition,
        customers: Iterable[str],
        t: Instant,
        as_of: str,
        scores: dict[str, float],
        parts: dict[str, str],
    ) -> None:
        accounts: Any = part.accounts
        export = getattr(accounts, "export", None)  # a core that handed over: one call
        if export is not None:
            customers = list(customers)
            accounts = export(customers)
        daycalc = part.engine.daycalc
        for c in customers:
            a = accounts.get(c)
            if a is None:
                continue
            e = health_entry(a, t, daycalc, as_of)
            if e is not None:
                scores[c], parts[c] = e

    def _failed(self, exc: Exception) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "health: cannot publish to Redis (%s: %s); retrying every second",
                type(exc).__name__,
                exc,
            )


# ---- reading (GET /at-risk and `engagement at-risk`) ------------------------------------------


def _text(v: bytes | str) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def at_risk_rows(
    members: Sequence[tuple[bytes | str, float]], parts: Sequence[bytes | str | None]
) -> list[dict[str, Any]]:
    """Rows of the at-risk listing from ZRANGEBYSCORE ... WITHSCORES and HMGET of the parts."""
    rows: list[dict[str, Any]] = []
    for (member, score), raw in zip(members, parts, strict=True):
        row: dict[str, Any] = {"customer": _text(member), "health": float(score)}
        try:
            p = json.loads(_text(raw)) if raw is not None else {}
        except ValueError:
            p = {}
        for k in ("recency", "frequency", "sentiment", "as_of"):
            row[k] = p.get(k)
        rows.append(row)
    return rows


def at_risk_body(total: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"threshold": AT_RISK_BELOW, "at_risk": total, "customers": rows}


def parse_limit(raw: str | None) -> int:
    """A listing limit: 1..MAX_LIMIT (default DEFAULT_LIMIT); ValueError otherwise."""
    if raw is None or raw.strip() == "":
        return DEFAULT_LIMIT
    try:
        n = int(raw.strip())
    except ValueError:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw!r}") from None
    if not 1 <= n <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw!r}")
    return n


async def read_at_risk(r: Any, zkey: str, hkey: str, limit: int) -> dict[str, Any]:
    """The at-risk listing (health < 40, lowest first) from an asyncio Redis client."""
    pipe = r.pipeline(transaction=True)
    pipe.zrangebyscore(zkey, "-inf", f"({AT_RISK_BELOW}", start=0, num=limit, withscores=True)
    pipe.zcount(zkey, "-inf", f"({AT_RISK_BELOW}")
    members, total = await pipe.execute()
    parts = await r.hmget(hkey, [m for m, _ in members]) if members else []
    return at_risk_body(int(total), at_risk_rows(members, parts))


def read_at_risk_sync(r: Any, zkey: str, hkey: str, limit: int) -> dict[str, Any]:
    """The same with a synchronous Redis client (the command line)."""
    pipe = r.pipeline(transaction=True)
    pipe.zrangebyscore(zkey, "-inf", f"({AT_RISK_BELOW}", start=0, num=limit, withscores=True)
    pipe.zcount(zkey, "-inf", f"({AT_RISK_BELOW}")
    members, total = pipe.execute()
    parts = r.hmget(hkey, [m for m, _ in members]) if members else []
    return at_risk_body(int(total), at_risk_rows(members, parts))


# ---- wiring ------------------------------------------------------------------------------------


def register(worker: Runtime) -> HealthPublisher:
    """The publishing timers and GET /at-risk on the worker's app."""
    app = worker.app
    pub = HealthPublisher(worker)
    app.timer(interval=publish_seconds(), name="health.tick")(pub.paced_tick)
    app.timer(interval=refresh_seconds(), name="health.refresh")(pub.paced_refresh)

    @app.page("/at-risk")
    async def at_risk(self: View, request: Request) -> Response:
        try:
            limit = parse_limit(request.query.get("limit"))
        except ValueError:  # the message would echo the value: name what is expected
            return self.json(
                {"error": f"limit must be an integer from 1 to {MAX_LIMIT}"}, status=400
            )
        try:
            r = await worker.get_redis()
            body = await read_at_risk(r, pub.zkey, pub.hkey, limit)
        except Exception as exc:
            return self.json(
                {
                    "error": f"Redis is unavailable ({type(exc).__name__}); the health scores "
                    "are kept there. Retry when Redis is back."
                },
                status=503,
            )
        return self.json(body)

    return pub
