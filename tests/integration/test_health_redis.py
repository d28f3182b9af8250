"""Customer health in the real Redis: a worker-like object with real live partition state
(records run through `LiveUserPartition.apply`, facts through `LiveAccountPartition.apply`)
publishes with agents/health.py into this test's Redis database; the sorted set, the parts hash,
`engagement at-risk --json` (a subprocess) and the read of GET /at-risk are checked against
values computed by hand from docs/metrics.md, as records arrive and as time passes, and
re-publishing changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from agents import health as H
from streams.config import Config
from streams.live import Batch, LiveAccountPartition, LiveUserPartition
from streams.records import PRODUCT_EVENTS, SURVEY_ANSWERS
from streams.timeutil import MS, parse_rfc3339
from tests.integration.conftest import REPO, Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

APP_ID = "engagement"
T = "2026-11-20T12:00:00Z"
T2 = "2026-11-21T12:00:00Z"
ACCOUNT_PARTITIONS = 2


def ns(iso: str) -> int:
    v = parse_rfc3339(iso)
    assert isinstance(v, int)
    return v


class Feed:
    """One user partition (it owns every user) feeding two account partitions."""

    def __init__(self) -> None:
        cfg = Config()
        self.users = LiveUserPartition(cfg, 0, 1, ACCOUNT_PARTITIONS)
        self.accounts = {q: LiveAccountPartition(cfg, q) for q in range(ACCOUNT_PARTITIONS)}
        self.offsets = {PRODUCT_EVENTS: 0, SURVEY_ANSWERS: 0}
        self.n = 0

    def send(self, topic: str, value: dict[str, Any], pending: dict[int, set[str]]) -> None:
        """Apply one record (record ts = its ts) and mark the changed customers, as the
        accounts agent of agents/worker.py does."""
        off = self.offsets[topic]
        self.offsets[topic] = off + 1
        rts = ns(value["ts"]) // MS
        rec = (off, rts, value["user_id"].encode(), json.dumps(value).encode())
        out = self.users.apply(Batch(topic, 0, [rec]))
        assert out.applied == 1 and not out.dead_letters, out
        for q, facts in out.facts.items():
            dirty = self.accounts[q].apply(facts)
            if dirty:
                pending.setdefault(q, set()).update(dirty)

    def event(
        self,
        pending: dict[int, set[str]],
        user: str,
        ts: str,
        type_: str = "report_viewed",
        **kw: Any,
    ) -> None:
        self.n += 1
        value = {"event_id": f"e{self.n}", "type": type_, "user_id": user, "ts": ts, **kw}
        self.send(PRODUCT_EVENTS, value, pending)

    def answer(
        self, pending: dict[int, set[str]], user: str, ts: str, survey: str, score: int, **kw: Any
    ) -> None:
        self.n += 1
        value = {
            "response_id": f"r{self.n}",
            "survey": survey,
            "score": score,
            "user_id": user,
            "ts": ts,
            **kw,
        }
        self.send(SURVEY_ANSWERS, value, pending)


class FakeWorker:
    """What agents/health.py uses of agents.worker.Worker, on the real Redis."""

    def __init__(self, prefix: str, url: str, parts: dict[int, LiveAccountPartition]) -> None:
        self.s = SimpleNamespace(topics=SimpleNamespace(prefix=prefix), app_id=APP_ID)
        self.url = url
        self.acct_parts = parts
        self.health_pending: dict[int, set[str]] = {}
        self.clock = ns(T)
        self.redis: Any = None

    def now(self) -> int:
        return self.clock

    async def get_redis(self) -> Any:
        if self.redis is None:
            self.redis = aioredis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
        return self.redis

    def run(self, *coros: Any) -> list[Any]:
        async def go() -> list[Any]:
            try:
                return [await c for c in coros]
            finally:
                if self.redis is not None:
                    await self.redis.aclose()
                    self.redis = None

        return asyncio.run(go())


def build(feed: Feed, pending: dict[int, set[str]]) -> None:
    # acme: two users; 10 active days Nov 5..14 (last Nov 14 12:00), NPS 8 on Nov 15, a later
    # CSAT (NPS wins), and an activity after T (Nov 20 12:30)
    for d in range(5, 10):
        feed.event(pending, "u-1", f"2026-11-{d:02d}T12:00:00Z", account_id="acme")
    for d in range(10, 15):
        feed.event(pending, "u-2", f"2026-11-{d:02d}T12:00:00Z", account_id="acme")
    feed.answer(pending, "u-1", "2026-11-15T00:00:00Z", "nps", 8, account_id="acme")
    feed.answer(pending, "u-2", "2026-11-16T00:00:00Z", "csat", 1, account_id="acme")
    feed.event(pending, "u-1", "2026-11-20T12:30:00Z", account_id="acme")
    # globex: one activity long ago (Oct 10), CSAT 2 on Nov 19
    feed.event(pending, "u-3", "2026-10-10T12:00:00Z", account_id="globex")
    feed.answer(pending, "u-3", "2026-11-19T08:00:00Z", "csat", 2, account_id="globex")
    # u-4 (no account): only an impression, which is not activity
    feed.event(pending, "u-4", "2026-11-20T10:00:00Z", type_="impression")
    # initech: Oct 30..Nov 2 at 12:00 and Nov 3 at 15:00
    for day in ("2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"):
        feed.event(pending, "u-5", f"{day}T12:00:00Z", account_id="initech")
    feed.event(pending, "u-5", "2026-11-03T15:00:00Z", account_id="initech")
    # hooli: one activity on Oct 31, NPS 3 on Nov 1
    feed.event(pending, "u-6", "2026-10-31T12:00:00Z", account_id="hooli")
    feed.answer(pending, "u-6", "2026-11-01T00:00:00Z", "nps", 3, account_id="hooli")
    # future-co: its first record is after T
    feed.event(pending, "u-7", "2026-11-20T12:30:00Z", account_id="future-co")


# Hand-computed (docs/metrics.md): (health, recency, frequency, sentiment)
AT_T = {
    # 6 days since Nov 14 12:00: 1 - 6/30 = 0.8; 10 days / 20; NPS 8 -> 0.8
    # 100 (0.32 + 0.15 + 0.24)
    "acme": (71.0, 0.8, 0.5, 0.8),
    # 41 days since: recency 0; no active day in D0-29; CSAT (2-1)/4; 100 x 0.3 x 0.25
    "globex": (7.5, 0.0, 0.0, 0.25),
    # no activity; no answer: 100 x 0.3 x 0.5
    "u-4": (15.0, 0.0, 0.0, 0.5),
    # 16.875 days since Nov 3 15:00: 1 - 16.875/30 = 0.4375; 5 days / 20; 0.5
    # 100 (0.175 + 0.075 + 0.15) = 40 exactly: not at risk
    "initech": (40.0, 0.4375, 0.25, 0.5),
    # 20 days since Oct 31 12:00: 1/3; 1 day / 20; NPS 3 -> 0.3
    # 100 (0.4/3 + 0.015 + 0.09) = 23.8333...
    "hooli": (100 / 3 * 0.4 + 1.5 + 9.0, 1 / 3, 0.05, 0.3),
}
# after an NPS 10 from hooli (Nov 20 11:00): sentiment 1 -> 13.333... + 1.5 + 30
HOOLI_NPS_10 = (40 / 3 + 1.5 + 30.0, 1 / 3, 0.05, 1.0)
_R_2330 = 1 - (23.5 / 24) / 30  # 23.5 hours since Nov 20 12:30
AT_T2 = {
    # last activity Nov 20 12:30 counts now; 11 active days (Nov 5..14, Nov 20)
    "acme": (100 * (0.4 * _R_2330 + 0.3 * 0.55 + 0.24), _R_2330, 0.55, 0.8),
    "globex": (7.5, 0.0, 0.0, 0.25),
    "u-4": (15.0, 0.0, 0.0, 0.5),
    # 17.875 days since: 1 - 17.875/30; 100 (0.4 x 0.4041666... + 0.075 + 0.15) = 38.666...
    "initech": (100 * (0.4 * (12.125 / 30) + 0.075 + 0.15), 12.125 / 30, 0.25, 0.5),
    # 21 days since Oct 31 12:00: 0.3; 100 (0.12 + 0.015 + 0.3) = 43.5
    "hooli": (43.5, 0.3, 0.05, 1.0),
    # exists now: 23.5 hours since its activity, 1 day, no answer
    "future-co": (100 * (0.4 * _R_2330 + 0.015 + 0.15), _R_2330, 0.05, 0.5),
}


def _check_redis(
    client: redis.Redis, prefix: str, expected: dict[str, tuple[float, ...]], as_of: str
) -> None:
    zkey, hkey = f"{prefix}{APP_ID}:health", f"{prefix}{APP_ID}:health:parts"
    assert sorted(client.keys("*")) == sorted([zkey, hkey])
    scores = dict(client.zrange(zkey, 0, -1, withscores=True))
    assert scores == {c: pytest.approx(v[0], abs=1e-9) for c, v in expected.items()}
    parts = {c: json.loads(v) for c, v in client.hgetall(hkey).items()}
    assert set(parts) == set(expected)
    for c, (h, r, f, s) in expected.items():
        assert parts[c] == {
            "as_of": as_of,
            "health": pytest.approx(h, abs=1e-9),
            "recency": pytest.approx(r, abs=1e-12),
            "frequency": pytest.approx(f, abs=1e-12),
            "sentiment": pytest.approx(s, abs=1e-12),
        }, c
        assert parts[c]["health"] == scores[c]


def _expected_listing(
    expected: dict[str, tuple[float, ...]], as_of: str, limit: int = 100
) -> dict[str, Any]:
    risky = sorted((v[0], c) for c, v in expected.items() if v[0] < 40)
    return {
        "threshold": 40,
        "at_risk": len(risky),
        "customers": [
            {
                "customer": c,
                "health": pytest.approx(h, abs=1e-9),
                "recency": pytest.approx(expected[c][1], abs=1e-12),
                "frequency": pytest.approx(expected[c][2], abs=1e-12),
                "sentiment": pytest.approx(expected[c][3], abs=1e-12),
                "as_of": as_of,
            }
            for h, c in risky[:limit]
        ],
    }


def _cli(url: str, prefix: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "ENGAGEMENT_APP_ID")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "engagement_cli",
            "at-risk",
            "--redis-url",
            url,
            "--prefix",
            prefix,
            *extra,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_health_published_to_redis(
    stack: Stack, redis_db: int, redis_client: redis.Redis, topic_prefix: str
) -> None:
    url = f"redis://{stack.redis_host}:{stack.redis_port}/{redis_db}"
    feed = Feed()
    w = FakeWorker(topic_prefix, url, feed.accounts)
    build(feed, w.health_pending)
    pub = H.HealthPublisher(w, chunk=2)  # type: ignore[arg-type]

    # the first tick publishes every customer of the partitions it took over, then the pending
    w.run(pub.tick())
    assert w.health_pending == {}
    _check_redis(redis_client, topic_prefix, AT_T, T)
    # the snapshot counts the same customers at risk (3: globex, u-4, hooli)
    at_risk = sum(p.engine.partial(ns(T)).at_risk for p in feed.accounts.values())
    assert at_risk == 3 == redis_client.zcount(f"{topic_prefix}{APP_ID}:health", "-inf", "(40")

    # engagement at-risk --json, and the read behind GET /at-risk
    res = _cli(url, topic_prefix, "--json")
    assert res.returncode == 0, res.stderr
    listing = json.loads(res.stdout)
    assert listing == _expected_listing(AT_T, T)
    assert [c["customer"] for c in listing["customers"]] == ["globex", "u-4", "hooli"]
    zkey, hkey = H.health_keys(topic_prefix, APP_ID)
    (page,) = w.run(_read(w, zkey, hkey, 100))
    assert page == listing
    res = _cli(url, topic_prefix, "--json", "--limit", "2")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == _expected_listing(AT_T, T, limit=2)
    res = _cli(url, topic_prefix)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["customer", "health", "recency", "frequency", "sentiment", "as_of"]
    assert lines[1].split() == ["globex", "7.50", "0.000", "0.000", "0.250", T]
    assert lines[-1].startswith("3 customer(s) at risk")

    # re-publishing (same clock): the same keys, members, scores and parts, byte for byte
    before = (
        redis_client.zrange(zkey, 0, -1, withscores=True),
        redis_client.hgetall(hkey),
    )
    w.health_pending.update({q: set(p.accounts) for q, p in feed.accounts.items()})
    w.run(pub.refresh(), pub.tick(), pub.refresh_tick())
    after = (redis_client.zrange(zkey, 0, -1, withscores=True), redis_client.hgetall(hkey))
    assert after == before
    _check_redis(redis_client, topic_prefix, AT_T, T)

    # a record arrives: hooli answers NPS 10; the next tick publishes it
    feed.answer(w.health_pending, "u-6", "2026-11-20T11:00:00Z", "nps", 10, account_id="hooli")
    assert any("hooli" in s for s in w.health_pending.values())
    w.run(pub.tick())
    _check_redis(redis_client, topic_prefix, {**AT_T, "hooli": HOOLI_NPS_10}, T)
    res = _cli(url, topic_prefix, "--json")
    assert [c["customer"] for c in json.loads(res.stdout)["customers"]] == ["globex", "u-4"]

    # time passes: a day later the refresh recomputes everyone (initech falls under 40,
    # future-co exists, acme's activity after T counts)
    w.clock = ns(T2)
    w.run(pub.refresh_tick())
    _check_redis(redis_client, topic_prefix, AT_T2, T2)
    res = _cli(url, topic_prefix, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == _expected_listing(AT_T2, T2)
    assert [c["customer"] for c in json.loads(res.stdout)["customers"]] == [
        "globex",
        "u-4",
        "initech",
    ]


async def _read(w: FakeWorker, zkey: str, hkey: str, limit: int) -> dict[str, Any]:
    return await H.read_at_risk(await w.get_redis(), zkey, hkey, limit)


def test_cli_on_an_empty_database(stack: Stack, redis_db: int, topic_prefix: str) -> None:
    url = f"redis://{stack.redis_host}:{stack.redis_port}/{redis_db}"
    res = _cli(url, topic_prefix, "--json")
    assert res.returncode == 0
    assert json.loads(res.stdout) == {"threshold": 40, "at_risk": 0, "customers": []}
    assert "no health published yet" in res.stderr
