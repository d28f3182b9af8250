"""Customer health (docs/metrics.md, "Customer health"): `customer_health` on hand-computed
cases, the threshold decided exactly, and the Redis publisher's bookkeeping with a fake Redis
(what it writes, that a Redis error keeps customers pending and never raises).

Every expected value below is computed by hand from the definitions:
  recency = max(0, 1 - days since last activity / 30), frequency = min(1, active days / 20),
  sentiment = NPS / 10, else (CSAT - 1) / 4, else 0.5,
  health = 100 x (0.4 recency + 0.3 frequency + 0.3 sentiment).
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from agents import health as H
from engagement_cli.cli import main
from streams.config import Config
from streams.engine import AccountPartition, customer_health, health_at_risk
from streams.errors import ConfigError
from streams.state import K_CSAT, K_NONE, K_NPS
from streams.timeutil import parse_rfc3339

T = "2026-11-20T12:00:00Z"


def ns(iso: str) -> int:
    v = parse_rfc3339(iso)
    assert isinstance(v, int)
    return v


def account(facts: list[tuple[str, bool, int, float]], tz: str = "UTC") -> AccountPartition:
    """An account partition fed (customer "c") with (ts, activity, kind, value) facts."""
    part = AccountPartition(Config.from_mapping({"timezone": tz}))
    for ts, act, kind, value in facts:
        part.fact("c", ns(ts), ns(ts), act, kind, value)
    return part


def act(ts: str) -> tuple[str, bool, int, float]:
    return (ts, True, K_NONE, 0.0)


def nps(ts: str, score: int) -> tuple[str, bool, int, float]:
    return (ts, False, K_NPS, float(score))


def csat(ts: str, score: int) -> tuple[str, bool, int, float]:
    return (ts, False, K_CSAT, float(score))


def health_of(part: AccountPartition, t: str = T) -> tuple[float, float, float, float]:
    return customer_health(part.accounts["c"], ns(t), part.daycalc)


def approx(*values: float) -> Any:
    return pytest.approx(values, abs=1e-9)


# ---- customer_health ---------------------------------------------------------------------------


def test_no_activity_and_no_answer() -> None:
    # only an inactive event (an impression): recency 0, frequency 0, sentiment 0.5
    part = account([("2026-11-20T10:00:00Z", False, K_NONE, 0.0)])
    assert health_of(part) == approx(15.0, 0.0, 0.0, 0.5)


def test_recency_frequency_and_latest_nps() -> None:
    days = [f"2026-11-{d:02d}T12:00:00Z" for d in range(5, 15)]  # 10 active days, last Nov 14
    facts = [act(d) for d in days]
    facts += [
        nps("2026-11-10T00:00:00Z", 2),
        nps("2026-11-15T00:00:00Z", 8),  # the latest NPS at T
        nps("2026-11-20T13:00:00Z", 0),  # after T: not yet
        csat("2026-11-19T00:00:00Z", 1),  # NPS wins over CSAT
    ]
    # recency 1 - 6/30 = 0.8; frequency 10/20 = 0.5; sentiment 0.8
    # health = 100 (0.32 + 0.15 + 0.24) = 71
    assert health_of(account(facts)) == approx(71.0, 0.8, 0.5, 0.8)


def test_csat_tie_takes_the_lower_score_and_old_activity_counts_nothing() -> None:
    facts = [
        act("2026-10-10T12:00:00Z"),  # 41 days before T: recency 0, outside D0-29
        csat("2026-11-19T08:00:00Z", 5),
        csat("2026-11-19T08:00:00Z", 2),  # same ts: the lower score is the latest
    ]
    # sentiment (2 - 1) / 4 = 0.25; health = 100 x 0.3 x 0.25 = 7.5
    assert health_of(account(facts)) == approx(7.5, 0.0, 0.0, 0.25)


def test_frequency_is_capped_and_recency_is_a_fraction_of_days() -> None:
    facts = [act(f"2026-10-{d:02d}T09:00:00Z") for d in range(22, 32)]  # Oct 22..31: 10 days
    facts += [act(f"2026-11-{d:02d}T09:00:00Z") for d in range(1, 16)]  # Nov 1..15: 15 days
    facts.append(act("2026-11-20T00:00:00Z"))  # Nov 20, 12 hours before T
    # D0-29 = Oct 22: 26 active days -> frequency 1
    # recency 1 - 0.5/30 = 59/60; health = 100 (0.4 x 59/60 + 0.3 + 0.15) = 84.3333...
    h, r, f, s = health_of(account(facts))
    assert (h, r, f, s) == approx(100 * (0.4 * 59 / 60 + 0.45), 59 / 60, 1.0, 0.5)
    assert h == pytest.approx(84.333333333, abs=1e-8)


def test_activity_after_t_does_not_count() -> None:
    facts = [act("2026-11-18T12:00:00Z"), act("2026-11-20T12:30:00Z")]  # the second after T
    # last activity Nov 18 12:00: 2 days -> recency 1 - 2/30 = 14/15; 1 active day -> 0.05
    # health = 100 (0.4 x 14/15 + 0.015 + 0.15) = 53.8333...
    assert health_of(account(facts)) == approx(
        100 * (0.4 * 14 / 15 + 0.015 + 0.15), 14 / 15, 0.05, 0.5
    )
    # an hour later both count: recency 1 - (1/48)/30, 2 active days (Nov 18 and Nov 20)
    later = health_of(account(facts), "2026-11-20T13:00:00Z")
    r = 1 - (1 / 48) / 30
    assert later == approx(100 * (0.4 * r + 0.03 + 0.15), r, 0.1, 0.5)


def test_calendar_days_are_local_days() -> None:
    # New York is UTC-5 in November: both events are on Nov 19 there (two UTC days)
    facts = [act("2026-11-19T23:00:00Z"), act("2026-11-20T01:00:00Z")]
    t = "2026-11-20T03:00:00Z"
    r = 1 - (2 / 24) / 30  # 2 hours since the last activity
    ny = health_of(account(facts, "America/New_York"), t)
    assert ny == approx(100 * (0.4 * r + 0.3 * 0.05 + 0.15), r, 0.05, 0.5)
    utc = health_of(account(facts), t)
    assert utc == approx(100 * (0.4 * r + 0.3 * 0.1 + 0.15), r, 0.1, 0.5)


def _exactly_40() -> AccountPartition:
    # 5 active days (Oct 30..Nov 3), the last at Nov 3 15:00 = T - 16.875 days
    # recency 1 - 16.875/30 = 0.4375; frequency 0.25; sentiment 0.5
    # health = 100 (0.175 + 0.075 + 0.15) = 40 exactly: not at risk
    days = ["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"]
    facts = [act(d + "T12:00:00Z") for d in days] + [act("2026-11-03T15:00:00Z")]
    return account(facts)


def test_threshold_is_decided_exactly() -> None:
    part = _exactly_40()
    h, r, f, s = health_of(part)
    assert (h, r, f, s) == approx(40.0, 0.4375, 0.25, 0.5)
    assert not health_at_risk(part.accounts["c"], ns(T), part.daycalc, h)
    # the snapshot agrees (the partial uses the same functions)
    p = part.partial(ns(T))
    assert p.at_risk == 0 and list(p.health) == [pytest.approx(40.0)]
    # the published score is never below 40 for it, so ZRANGEBYSCORE (40 leaves it out
    entry = H.health_entry(part.accounts["c"], ns(T), part.daycalc)
    assert entry is not None and entry[0] >= 40.0
    # clearly under 40: decided by the float
    low = account([csat("2026-11-19T08:00:00Z", 1)])  # 100 x 0.3 x 0 = 0
    assert health_at_risk(low.accounts["c"], ns(T), low.daycalc, health_of(low)[0])


def test_a_customer_before_its_first_record_has_no_entry() -> None:
    part = account([act("2026-11-20T12:30:00Z")])
    assert H.health_entry(part.accounts["c"], ns(T), part.daycalc) is None
    entry = H.health_entry(part.accounts["c"], ns("2026-11-20T13:00:00Z"), part.daycalc)
    assert entry is not None
    parts = json.loads(entry[1])
    r = 1 - (1 / 48) / 30  # 30 minutes since its activity
    assert parts == {
        "as_of": "2026-11-20T13:00:00Z",
        "frequency": pytest.approx(0.05),
        "health": pytest.approx(100 * (0.4 * r + 0.015 + 0.15)),
        "recency": pytest.approx(r),
        "sentiment": 0.5,
    }


# ---- settings and parsing ----------------------------------------------------------------------


def test_publish_seconds() -> None:
    assert H.publish_seconds({}) == 5.0
    assert H.publish_seconds({H.ENV_PUBLISH: "1"}) == 1.0
    for bad in ("0", "-1", "soon", "nan", "inf"):
        with pytest.raises(ConfigError, match="ENGAGEMENT_HEALTH_PUBLISH_SECONDS"):
            H.publish_seconds({H.ENV_PUBLISH: bad})


def test_refresh_seconds() -> None:
    assert H.refresh_seconds({}) == 60.0
    assert H.refresh_seconds({H.ENV_REFRESH: " 5 "}) == 5.0
    for bad in ("0", "-1", "soon", "nan", "inf"):
        with pytest.raises(ConfigError, match=H.ENV_REFRESH):
            H.refresh_seconds({H.ENV_REFRESH: bad})


def test_parse_limit() -> None:
    assert H.parse_limit(None) == H.DEFAULT_LIMIT
    assert H.parse_limit("7") == 7
    for bad in ("0", "-3", "x", "1.5", str(H.MAX_LIMIT + 1)):
        with pytest.raises(ValueError, match="limit"):
            H.parse_limit(bad)


def test_keys() -> None:
    assert H.health_keys("test.x.", "engagement") == (
        "test.x.engagement:health",
        "test.x.engagement:health:parts",
    )


# ---- the publisher, with a fake Redis ------------------------------------------------------------


class FakePipe:
    def __init__(self, redis: FakeRedis) -> None:
        self.r = redis
        self.ops: list[tuple[str, str, dict[str, Any]]] = []

    def zadd(self, key: str, mapping: dict[str, float]) -> None:
        self.ops.append(("zadd", key, dict(mapping)))

    def hset(self, key: str, mapping: dict[str, str]) -> None:
        self.ops.append(("hset", key, dict(mapping)))

    async def execute(self) -> list[Any]:
        if self.r.down:
            raise ConnectionError("Redis is down")
        for op, key, mapping in self.ops:
            self.r.commands.append(op)
            self.r.data.setdefault(key, {}).update(mapping)
        return [len(m) for _, _, m in self.ops]


class FakeRedis:
    def __init__(self) -> None:
        self.down = False
        self.data: dict[str, dict[str, Any]] = {}
        self.commands: list[str] = []

    def pipeline(self, transaction: bool = True) -> FakePipe:
        return FakePipe(self)


class FakeWorker:
    def __init__(self, parts: dict[int, Any], clock: str = T) -> None:
        self.s = SimpleNamespace(topics=SimpleNamespace(prefix="p."), app_id="app")
        self.acct_parts = parts
        self.health_pending: dict[int, set[str]] = {}
        self.clock = ns(clock)
        self.redis = FakeRedis()

    def now(self) -> int:
        return self.clock

    async def get_redis(self) -> FakeRedis:
        return self.redis


def _live_parts() -> dict[int, Any]:
    """Two account partitions with three customers (activity on Nov 18 12:00)."""
    from streams.live import LiveAccountPartition

    cfg = Config()
    parts = {0: LiveAccountPartition(cfg, 0), 1: LiveAccountPartition(cfg, 1)}
    ts = ns("2026-11-18T12:00:00Z")
    parts[0].engine.fact("a", ts, ts, True, K_NONE, 0.0)
    parts[0].engine.fact("b", ts, ts, True, K_NONE, 0.0)
    parts[1].engine.fact("c", ts, ts, True, K_NONE, 0.0)
    return parts


# the three customers at T: recency 14/15, frequency 0.05, sentiment 0.5
H_18 = 100 * (0.4 * 14 / 15 + 0.015 + 0.15)


def test_publisher_writes_absolute_values_in_chunks() -> None:
    w = FakeWorker(_live_parts())
    pub = H.HealthPublisher(w, chunk=1)  # type: ignore[arg-type]
    asyncio.run(pub.tick())  # adopts both partitions
    z = w.redis.data["p.app:health"]
    assert z == {"a": pytest.approx(H_18), "b": pytest.approx(H_18), "c": pytest.approx(H_18)}
    parts = {c: json.loads(v) for c, v in w.redis.data["p.app:health:parts"].items()}
    assert parts["a"]["as_of"] == T and parts["a"]["recency"] == pytest.approx(14 / 15)
    assert set(w.redis.commands) == {"zadd", "hset"}  # never an increment
    assert len(w.redis.commands) == 6  # one customer per chunk: 3 x (ZADD, HSET)
    w.redis.commands.clear()
    asyncio.run(pub.tick())  # nothing changed, nothing pending: nothing written
    assert w.redis.commands == []


def test_pending_customers_stay_pending_while_redis_is_down() -> None:
    w = FakeWorker(_live_parts())
    pub = H.HealthPublisher(w)  # type: ignore[arg-type]
    asyncio.run(pub.tick())
    w.redis.down = True
    w.health_pending.update({0: {"a"}, 1: {"c"}, 7: {"not-ours"}})
    asyncio.run(pub.tick())  # logs, does not raise
    assert w.health_pending == {0: {"a"}, 1: {"c"}}
    asyncio.run(pub.refresh_tick())  # the same for the refresh
    w.redis.down = False
    w.clock = ns("2026-11-21T12:00:00Z")  # a day later: 3 days since, recency 1 - 3/30 = 0.9
    asyncio.run(pub.tick())
    assert w.health_pending == {}
    z = w.redis.data["p.app:health"]
    h_19 = 100 * (0.4 * 0.9 + 0.015 + 0.15)
    assert z == {"a": pytest.approx(h_19), "b": pytest.approx(H_18), "c": pytest.approx(h_19)}
    asyncio.run(pub.refresh())  # time passes for every customer
    assert w.redis.data["p.app:health"]["b"] == pytest.approx(h_19)


def test_the_timers_rest_three_times_as_long_as_they_published() -> None:
    """`paced_tick` / `paced_refresh` (the timers): after publishing for d seconds, neither
    publishes for 3 d (DUTY = 1/4); the customers that change meanwhile stay pending."""
    w = FakeWorker(_live_parts())
    now = [100.0]
    pub = H.HealthPublisher(w, chunk=1, clock=lambda: now[0])  # type: ignore[arg-type]
    publish = pub._publish

    async def slow(part: Any, customers: Any) -> int:  # each chunk takes 2 s of the clock
        now[0] += 2.0
        return await publish(part, customers)

    pub._publish = slow  # type: ignore[method-assign]
    asyncio.run(pub.paced_tick())  # adopts 3 customers in 3 chunks: 6 s busy
    assert now[0] == 106.0 and pub.rest_until == 106.0 + 18.0
    assert len(w.redis.commands) == 6
    w.redis.commands.clear()
    w.health_pending[0] = {"a"}
    for at in (107.0, 123.9):
        now[0] = at
        asyncio.run(pub.paced_tick())
        asyncio.run(pub.paced_refresh())
    assert w.redis.commands == [] and w.health_pending == {0: {"a"}}  # resting: nothing sent
    now[0] = 124.0
    asyncio.run(pub.paced_tick())
    assert w.redis.commands == ["zadd", "hset"] and w.health_pending == {}
    assert pub.rest_until == 126.0 + 6.0  # one chunk, 2 s: 6 s of rest
    now[0] = 132.0
    asyncio.run(pub.paced_refresh())  # every customer: 3 chunks
    assert len(w.redis.commands) == 2 + 6


def test_a_revoked_partition_is_not_published_and_a_new_one_is_adopted() -> None:
    parts = _live_parts()
    w = FakeWorker({0: parts[0]})
    pub = H.HealthPublisher(w)  # type: ignore[arg-type]
    asyncio.run(pub.tick())
    assert set(w.redis.data["p.app:health"]) == {"a", "b"}
    w.acct_parts = {1: parts[1]}  # a rebalance: 0 revoked, 1 assigned
    w.health_pending[0] = {"a"}
    w.redis.commands.clear()
    asyncio.run(pub.tick())
    assert set(w.redis.data["p.app:health"]) == {"a", "b", "c"}
    assert w.redis.commands == ["zadd", "hset"]  # only partition 1's customer
    assert w.health_pending == {}


# ---- the command line without Redis ------------------------------------------------------------


def test_cli_redis_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["at-risk", "--redis-url", "redis://127.0.0.1:1/0"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "redis://127.0.0.1:1/0" in err and "make stack-up" in err and "--redis-url" in err


def test_cli_bad_url_and_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["at-risk", "--redis-url", "http://x"]) == 2
    assert "not a Redis URL" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["at-risk", "--limit", "0"])
    assert exc.value.code == 2
    assert main(["at-risk", "--redis-url", "redis://:secret@127.0.0.1:1/0"]) == 1
    assert "secret" not in capsys.readouterr().err


def test_the_cores_health_entries_are_health_entry() -> None:
    """Differential: the compiled core's `health_entries` (what the publisher sends for a
    native partition) give, through `entry_of`, the bytes `health_entry` gives on the exported
    state, for customers of every kind, at instants of ns and finer, including the exactly-40
    customer and one that does not exist yet."""
    from fractions import Fraction

    from tests.unit.test_native_live import _native

    nl = _native()
    ref = {
        "exact40": _exactly_40(),
        "low": account([csat("2026-11-19T08:00:00Z", 1)]),
        "nps": account([act("2026-11-18T09:00:00Z"), nps("2026-11-19T10:00:00Z", 9)]),
        "late": account([act("2026-11-20T12:30:00Z")]),
        "paris": account([act("2026-11-10T23:30:00Z"), act("2026-11-19T00:30:00Z")], "UTC"),
    }
    cfg = Config()
    facts = []
    for c, part in ref.items():
        a = part.accounts["c"]
        facts.append((c, a))
    core = nl.NativeLiveAccountPartition(cfg, 0, {c: a for c, a in facts})
    assert not core.handed_over
    names = [c for c, _ in facts] + ["nobody"]
    for t in (ns(T), ns(T) - 7, Fraction(ns(T) * 4 + 1, 4), ns("2026-11-20T12:15:00Z")):
        rows = core.health_entries(names, t)
        assert rows is not None
        got = {c: H.entry_of(h, r, f, s, risk, "as-of") for c, h, r, f, s, risk in rows}
        want = {}
        for c, a in core.accounts.export().items():
            e = H.health_entry(a, t, core.engine.daycalc, "as-of")
            if e is not None:
                want[c] = e
        assert got == want
        assert "exact40" in got and ("late" in got) == (t >= ns("2026-11-20T12:30:00Z"))
    rows = core.health_entries(["exact40"], ns(T))
    assert rows is not None and rows[0][1:] == (40.0, 0.4375, 0.25, 0.5, False)


@pytest.mark.parametrize(
    "values",
    [
        (55.5, 0.125, 0.35, 0.5),
        (100.0, 1.0, 1.0, 1.0),
        (0.0, 0.0, 0.0, 0.0),
        (39.99999999999999, 3.3e-05, 0.05, 0.1),
        (12.345678901234567, 1e-300, 2.5e-07, 0.7),
        (40, 1, 0, 0.5),  # ints, as a caller may pass them
    ],
)
def test_the_parts_json_is_what_json_dumps_writes(values: tuple[float, ...]) -> None:
    h, recency, frequency, sentiment = values
    for as_of in ("2026-12-05T20:00:00.123456789Z", 'odd "as of" \\ text'):
        _score, got = H.entry_of(h, recency, frequency, sentiment, h < 40, as_of)
        want = json.dumps(
            {
                "as_of": as_of,
                "frequency": frequency,
                "health": _score,
                "recency": recency,
                "sentiment": sentiment,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        assert got == want
