"""GET /metrics (agents/metrics.py): the series of the partitions a worker owns.

A fake worker holds real live partitions (streams/live.py) fed with hand-built records. The
expected values are worked out by hand in the comments, or taken from the snapshot that replay
computes from the same records (the judge), never from the collector's own output.
"""

from __future__ import annotations

import gc
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agents.metrics import EngagementCollector, consumer_lags, exposition, fold
from streams.config import Config
from streams.errors import ConfigError
from streams.live import Batch, LiveAccountPartition, LiveUserPartition, owner_of
from streams.records import REJECT_REASONS
from streams.replay import replay_lines
from streams.timeutil import Instant, parse_as_of
from tests.unit.records_builder import ans, ev, line, ms

T = "2026-11-20T12:00:00Z"  # D0 = 2026-11-20 (UTC); T-24h = 11-19T12:00, T-1h = 11:00
P = 2
CFG = {"metrics": {"touchpoints": ["support", "email"], "features": ["search"]}}


@dataclass
class FakeSettings:
    config: Config
    worker_id: str = "w-test"
    app_id: str = "engagement"


@dataclass
class FakeWorker:
    """What the collector reads of agents.worker.Worker."""

    s: FakeSettings
    t: Instant
    user_parts: dict[int, LiveUserPartition] = field(default_factory=dict)
    acct_parts: dict[int, LiveAccountPartition] = field(default_factory=dict)
    stats: dict[str, Any] = field(
        default_factory=lambda: {"batches": 0, "records": 0, "intake_records": 0}
    )
    intake_consumer: Any = None

    def now(self) -> Instant:
        return self.t


def pv(eid: str, user: str, ts: str, sid: str) -> bytes:
    return ev(eid, "page_view", user, ts, session_id=sid)


# Users (each record goes to the partition that owns its user):
# u1: signup 11-10T09:00 (mature cohort D0-13..D0-7, and the d7 cohort D0-14..D0-8), profile
#     11-11 and key_action 11-12T10:00 (activated; returned: active 11-11; ttfv 2d1h = 176400 s);
#     on D0 a search feature and session s1 09:00-09:10 with one page view (600 s, a bounce);
#     not active on D0-1 -> resurrecting; not active 11-17 -> not retained at d7.
# u2: signup on D0 (new), funnel welcome + profile, key_action 1 h after signup (ttfv 3600 s),
#     export_csv (a feature outside the allow-list), orders o1 30.0 and o2 20.5, o1 returned.
# u3: no signup, active D0-1 and D0 (returning); 1 click, 2 impressions, 1 like; ticket t1
#     opened 11-19T12:30, resolved 11-20T11:30 (82800 s), t2 opened 11:00 and open; account
#     acme subscribed 10-01, cancelled 11-20T02:00 (lost; a cancellation signal in 24h).
#     Surveys: CSAT 5 at support 11:00 (24h, not 1h: the window is (T-1h, T]), CSAT 2 at
#     checkout 11:30 (1h; -> touchpoint other; a csat_negative signal), CSAT 4 without
#     touchpoint 11-19T13:00, NPS 9 by email 11-18, NPS 3 without touchpoint 11-01 (30d only),
#     CES 6 at support 11-19T20:00.
# u4: active D0-1 only (dormant), session s9 11-19 11:00-13:00 with 2 page views (7200 s, ended
#     in the 24h window), subscribed 11-01 (new subscriber).
# u5: last active 11-06T11:30 (mau only); the dormant signal at L+14d = 11-20T11:30 (1h, 24h).
VALID = [
    ev("u1-1", "signup", "u1", "2026-11-10T09:00:00Z"),
    ev("u1-2", "profile_completed", "u1", "2026-11-11T10:00:00Z"),
    ev("u1-3", "key_action", "u1", "2026-11-12T10:00:00Z"),
    ev("u1-4", "feature_used", "u1", "2026-11-20T08:00:00Z", props={"feature": "search"}),
    ev("u1-5", "session_start", "u1", "2026-11-20T09:00:00Z", session_id="s1"),
    pv("u1-6", "u1", "2026-11-20T09:01:00Z", "s1"),
    ev("u1-7", "session_end", "u1", "2026-11-20T09:10:00Z", session_id="s1"),
    ev("u2-1", "signup", "u2", "2026-11-20T06:00:00Z"),
    ev("u2-2", "onboarding_step", "u2", "2026-11-20T06:05:00Z", props={"step": "welcome"}),
    ev("u2-3", "onboarding_step", "u2", "2026-11-20T06:10:00Z", props={"step": "profile"}),
    ev("u2-4", "key_action", "u2", "2026-11-20T07:00:00Z"),
    ev("u2-5", "feature_used", "u2", "2026-11-20T07:30:00Z", props={"feature": "export_csv"}),
    ev("u2-6", "purchase", "u2", "2026-11-20T07:40:00Z", props={"order_id": "o1", "amount": 30.0}),
    ev("u2-7", "purchase", "u2", "2026-11-20T07:45:00Z", props={"order_id": "o2", "amount": 20.5}),
    ev("u2-8", "return", "u2", "2026-11-20T08:00:00Z", props={"order_id": "o1"}),
    ev("u3-0", "subscription_started", "u3", "2026-10-01T00:00:00Z", account_id="acme"),
    ans("r3-1", "nps", 3, "u3", "2026-11-01T10:00:00Z"),
    ans("r3-2", "nps", 9, "u3", "2026-11-18T10:00:00Z", touchpoint="email"),
    ev("u3-1", "file_uploaded", "u3", "2026-11-19T10:00:00Z"),
    ev("u3-2", "ticket_opened", "u3", "2026-11-19T12:30:00Z", props={"ticket_id": "t1", "category": "bug"}),
    ans("r3-3", "csat", 4, "u3", "2026-11-19T13:00:00Z"),
    ans("r3-4", "ces", 6, "u3", "2026-11-19T20:00:00Z", touchpoint="support"),
    ev("u3-3", "subscription_cancelled", "u3", "2026-11-20T02:00:00Z", account_id="acme"),
    ev("u3-4", "impression", "u3", "2026-11-20T09:58:00Z"),
    ev("u3-5", "impression", "u3", "2026-11-20T09:59:00Z"),
    ev("u3-6", "click", "u3", "2026-11-20T10:00:00Z"),
    ev("u3-7", "social_interaction", "u3", "2026-11-20T10:05:00Z", props={"action": "like"}),
    ans("r3-5", "csat", 5, "u3", "2026-11-20T11:00:00Z", touchpoint="support"),
    ev("u3-8", "ticket_opened", "u3", "2026-11-20T11:00:00Z", props={"ticket_id": "t2", "category": "bug"}),
    ev("u3-9", "ticket_resolved", "u3", "2026-11-20T11:30:00Z", props={"ticket_id": "t1"}),
    ans("r3-6", "csat", 2, "u3", "2026-11-20T11:30:00Z", touchpoint="checkout"),
    ev("u4-1", "subscription_started", "u4", "2026-11-01T00:00:00Z"),
    ev("u4-2", "session_start", "u4", "2026-11-19T11:00:00Z", session_id="s9"),
    pv("u4-3", "u4", "2026-11-19T11:01:00Z", "s9"),
    pv("u4-4", "u4", "2026-11-19T11:02:00Z", "s9"),
    ev("u4-5", "session_end", "u4", "2026-11-19T13:00:00Z", session_id="s9"),
    ev("u5-1", "report_exported", "u5", "2026-11-06T11:30:00Z"),
]  # fmt: skip
DUPLICATE = ev("u1-4", "feature_used", "u1", "2026-11-20T08:00:01Z", props={"feature": "x"})
# (partition it is sent to, record, reason)
REJECTS = [
    (0, line("product-events", "not json", ms("2026-11-20T10:00:00Z"), key="u1"), "bad_json"),
    (0, line("product-events", {"event_id": "x", "type": "signup", "ts": T}, ms(T)), "schema"),
    (1, ev("f", "signup", "u9", "2026-11-20T11:00:00Z", rts="2026-11-20T09:00:00Z"), "future"),
    (1, ev("l", "signup", "u9", "2026-11-17T00:00:00Z", rts="2026-11-20T01:00:00Z"), "too_late"),
    (1, ev("b", "signup", "u9", "2026-11-20T10:00:00Z", pad="x" * 70_000), "too_large"),
]


def _user(record: bytes) -> str:
    return str(json.loads(json.loads(record)["payload"])["user_id"])


def build(cfg: Config) -> FakeWorker:
    """A worker owning every user and account partition, fed with the records above."""
    w = FakeWorker(FakeSettings(cfg), parse_as_of(T))
    for p in range(P):
        w.user_parts[p] = LiveUserPartition(cfg, p, P, P)
        w.acct_parts[p] = LiveAccountPartition(cfg, p)
    offsets: dict[tuple[str, int], int] = {}
    sends = [(owner_of(_user(r), P), r) for r in [*VALID, DUPLICATE]]
    sends += [(p, r) for p, r, _ in REJECTS]
    for p, record in sends:
        d = json.loads(record)
        off = offsets[(d["topic"], p)] = offsets.get((d["topic"], p), -1) + 1
        value = d["payload"].encode("utf-8")
        out = w.user_parts[p].apply(Batch(d["topic"], p, [(off, d["ts"], None, value)]))
        assert not out.forwards
        for q, facts in out.facts.items():
            w.acct_parts[q].apply(facts)
    return w


@dataclass
class World:
    w: FakeWorker  # the worker, fed
    reg: CollectorRegistry  # a fresh registry with its collector
    snap: dict[str, Any]  # the judge: replay's snapshot of the same records


@pytest.fixture
def world() -> World:
    cfg = Config.from_mapping(CFG)
    w = build(cfg)
    assert all(w.user_parts[p].users for p in range(P)), "every partition should own users"
    reg = CollectorRegistry()
    reg.register(EngagementCollector(w))
    snapshot = replay_lines([*VALID, DUPLICATE, *(r for _, r, _ in REJECTS)], cfg, T)
    return World(w, reg, snapshot)


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels)
    assert v is not None, f"no sample {name}{labels}"
    return v


def total(reg: CollectorRegistry, name: str, **labels: str) -> float:
    """The sum of every sample `name` whose labels include `labels` (a PromQL sum)."""
    out = 0.0
    found = False
    for metric in reg.collect():
        for s in metric.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                out += s.value
                found = True
    assert found, f"no sample {name}{labels}"
    return out


def test_activity_counts_and_ratios(world: World) -> None:
    reg, snap = world.reg, world.snap
    dau, wau, mau = (value(reg, "engagement_active_users", window=x) for x in ("1d", "7d", "30d"))
    assert (dau, wau, mau) == (3, 4, 5) == (snap["dau"], snap["wau"], snap["mau"])
    assert dau / mau * 100 == pytest.approx(snap["stickiness_pct"]) == 60.0
    life = {s: value(reg, "engagement_lifecycle_users", state=s) for s in snap["lifecycle"]}
    assert life == snap["lifecycle"] == {"new": 1, "returning": 1, "resurrecting": 1, "dormant": 1}
    assert life["new"] + life["returning"] + life["resurrecting"] == dau
    # search is allow-listed; export_csv folds into other
    assert value(reg, "engagement_feature_users", feature="search") / mau * 100 == pytest.approx(
        snap["feature_adoption_pct"]["search"]
    )
    assert value(reg, "engagement_feature_users", feature="other") == 1
    assert reg.get_sample_value("engagement_feature_users", {"feature": "export_csv"}) is None
    assert snap["feature_adoption_pct"] == {"export_csv": 20.0, "search": 20.0}


def test_survey_numerators_and_denominators(world: World) -> None:
    reg, snap = world.reg, world.snap
    resp = "engagement_survey_responses"
    # totals over touchpoints (none included) reproduce the snapshot's totals
    for window in ("1h", "24h", "7d"):
        n = total(reg, resp, survey="csat", window=window)
        pos = total(reg, "engagement_csat_positive_responses", window=window)
        assert pos / n * 100 == pytest.approx(snap[f"csat_pct_{window}"])
    assert total(reg, resp, survey="csat", window="24h") == snap["csat_responses_24h"] == 3
    assert total(reg, "engagement_csat_positive_responses", window="24h") == 2  # 5 and 4
    for window in ("7d", "30d"):
        n = total(reg, resp, survey="nps", window=window)
        pro = total(reg, "engagement_nps_promoter_responses", window=window)
        det = total(reg, "engagement_nps_detractor_responses", window=window)
        assert (pro - det) / n * 100 == pytest.approx(snap[f"nps_{window}"])
        points = total(reg, "engagement_ces_score_points", window=window)
        assert points / total(reg, resp, survey="ces", window=window) == pytest.approx(
            snap[f"ces_avg_{window}"]
        )
    assert (snap["nps_7d"], snap["nps_30d"], snap["ces_avg_7d"]) == (100.0, 0.0, 6.0)
    # one touchpoint: support (allow-listed) equals the snapshot's by_touchpoint entry
    sup = snap["by_touchpoint"]["support"]
    assert value(reg, resp, survey="csat", window="24h", touchpoint="support") == 1
    assert sup["csat_pct_24h"] == 100.0
    assert value(reg, "engagement_ces_score_points", window="7d", touchpoint="support") == 6
    # checkout is outside the allow-list: exported as other, never under its own name
    assert value(reg, resp, survey="csat", window="1h", touchpoint="other") == 1
    assert value(reg, "engagement_csat_positive_responses", window="1h", touchpoint="other") == 0
    assert snap["by_touchpoint"]["checkout"]["csat_pct_1h"] == 0.0
    assert (
        reg.get_sample_value(resp, {"survey": "csat", "window": "1h", "touchpoint": "checkout"})
        is None
    )
    # answers without a touchpoint: CSAT 4 (24h), NPS 3 (30d)
    assert value(reg, resp, survey="csat", window="24h", touchpoint="none") == 1
    assert value(reg, "engagement_nps_detractor_responses", window="30d", touchpoint="none") == 1
    assert value(reg, resp, survey="nps", window="7d", touchpoint="none") == 0
    # every allow-listed touchpoint is always there (0 when unanswered)
    assert value(reg, resp, survey="nps", window="30d", touchpoint="email") == 1
    assert value(reg, resp, survey="csat", window="24h", touchpoint="email") == 0


def test_onboarding_commerce_web_support_health(world: World) -> None:
    reg, snap = world.reg, world.snap
    cohort = value(reg, "engagement_first_week_cohort_users")
    assert cohort == 1
    assert (
        value(reg, "engagement_first_week_activated_users") / cohort * 100
        == snap["first_week_activation_pct"]
        == 100.0
    )
    assert (
        value(reg, "engagement_first_week_returned_users") / cohort * 100
        == snap["first_week_return_pct"]
        == 100.0
    )
    reached = {
        s: value(reg, "engagement_funnel_reached_users", step=s) for s in snap["funnel_reached"]
    }
    assert (
        reached
        == snap["funnel_reached"]
        == {"welcome": 1, "profile": 1, "invite": 0, "tour": 0, "done": 0}
    )
    assert (
        value(reg, "engagement_retention_cohort_users", day="7"),
        value(reg, "engagement_retention_retained_users", day="7"),
    ) == (1, 0)
    assert snap["d7_retention_pct"] == 0.0 and snap["d1_retention_pct"] is None
    assert value(reg, "engagement_retention_cohort_users", day="1") == 0

    # subscriptions: acme lost, u4 new
    start = value(reg, "engagement_subscribers_period_start")
    lost = value(reg, "engagement_subscribers_lost")
    end = value(reg, "engagement_subscribers")
    new = value(reg, "engagement_subscribers_new")
    assert (start, lost, end, new) == (1, 1, 1, 1)
    assert lost / start * 100 == snap["churn_rate_pct_30d"] == 100.0
    assert (end - new) / start * 100 == snap["retention_rate_pct_30d"] == 0.0

    # commerce: o1 30.0 and o2 20.5, both in the 30 and 90 days; o1 returned
    orders = value(reg, "engagement_orders", window="90d")
    rev90 = value(reg, "engagement_revenue", window="90d")
    assert (orders, rev90) == (2, 50.5) == (snap["orders_90d"], snap["revenue_90d"])
    assert rev90 / orders == snap["aov_90d"] == 25.25
    buyers = value(reg, "engagement_ordering_customers", window="90d")
    assert (
        value(reg, "engagement_repeat_customers", window="90d") / buyers * 100
        == snap["repeat_purchase_rate_pct_90d"]
        == 100.0
    )
    assert (
        value(reg, "engagement_returned_orders", window="90d") / orders * 100
        == snap["return_rate_pct_90d"]
        == 50.0
    )
    rev30 = value(reg, "engagement_revenue", window="30d")
    clv = (rev30 / value(reg, "engagement_ordering_customers", window="30d")) / (lost / start)
    assert clv == pytest.approx(snap["clv_estimate"]) and clv == 50.5

    # web: s1 600 s (a bounce), s9 7200 s
    sessions = value(reg, "engagement_sessions", window="24h")
    assert sessions == snap["sessions_24h"] == 2
    assert (
        value(reg, "engagement_bounced_sessions", window="24h") / sessions * 100
        == snap["bounce_rate_pct_24h"]
        == 50.0
    )
    dur = "engagement_session_duration_seconds"
    assert (
        value(reg, dur + "_sum") / value(reg, dur + "_count")
        == snap["avg_session_duration_s_24h"]
        == 3900.0
    )
    buckets = {
        le: value(reg, dur + "_bucket", le=le) for le in ("300", "600", "3600", "7200", "+Inf")
    }
    assert buckets == {"300": 0, "600": 1, "3600": 1, "7200": 2, "+Inf": 2}
    ctr = (
        value(reg, "engagement_clicks", window="24h")
        / value(reg, "engagement_impressions", window="24h")
        * 100
    )
    assert ctr == snap["ctr_pct_24h"] == 50.0
    social = {
        a: value(reg, "engagement_social_interactions", window="24h", action=a)
        for a in snap["social_interactions_24h"]
    }
    assert (
        social == snap["social_interactions_24h"]
        and social["like"] == 1
        and sum(social.values()) == 1
    )

    # support: t1 (82800 s) and t2 opened in 24h, t2 open
    assert value(reg, "engagement_tickets_opened", window="24h") == snap["tickets_opened_24h"] == 2
    assert value(reg, "engagement_open_tickets") == snap["open_tickets"] == 1
    res = "engagement_ticket_resolution_seconds"
    assert value(reg, res + "_count") == 1 and value(reg, res + "_bucket", le="86400") == 1
    assert (
        value(reg, res + "_sum") / value(reg, res + "_count") / 3600
        == snap["avg_resolution_hours_7d"]
        == 23.0
    )

    # time to first value: u2 3600 s, u1 176400 s; the median (lower middle) is 1 h
    ttfv = "engagement_time_to_first_value_seconds"
    assert value(reg, ttfv + "_count") == 2 and value(reg, ttfv + "_sum") == 180000
    assert (
        value(reg, ttfv + "_bucket", le="3600") == 1
        and value(reg, ttfv + "_bucket", le="86400") == 1
    )
    assert value(reg, ttfv + "_bucket", le="172800") == 1
    assert value(reg, ttfv + "_bucket", le="259200") == 2
    assert snap["ttfv_median_hours"] == 1.0

    # health: customers u1, u2, u3, acme, u4, u5
    h = "engagement_customer_health_score"
    assert value(reg, h + "_count") == 6
    assert value(reg, h + "_sum") / value(reg, h + "_count") == pytest.approx(snap["health_avg"])
    assert value(reg, "engagement_customers_at_risk") == snap["customers_at_risk"]


def test_churn_signals_and_pipeline_counters(world: World) -> None:
    w, reg, snap = world.w, world.reg, world.snap
    sig = "engagement_churn_signals"
    for window in ("1h", "24h"):
        got = {s: value(reg, sig, window=window, signal=s) for s in snap[f"churn_signals_{window}"]}
        assert got == snap[f"churn_signals_{window}"]
    assert snap["churn_signals_1h"] == {
        "cancellation": 0,
        "nps_detractor": 0,
        "csat_negative": 1,
        "dormant": 1,
    }
    assert snap["churn_signals_24h"] == {
        "cancellation": 1,
        "nps_detractor": 0,
        "csat_negative": 1,
        "dormant": 1,
    }

    assert total(reg, "engagement_records_accepted_total") == snap["accepted"] == len(VALID)
    assert total(reg, "engagement_records_duplicate_total") == snap["duplicates"] == 1
    dup_p = str(owner_of("u1", P))
    assert value(reg, "engagement_records_duplicate_total", partition=dup_p) == 1
    for reason in REJECT_REASONS:
        assert (
            total(reg, "engagement_records_rejected_total", reason=reason)
            == snap["rejected"][reason]
            == 1
        )
    for p, _, reason in REJECTS:
        assert value(reg, "engagement_records_rejected_total", partition=str(p), reason=reason) == 1
    assert value(reg, "engagement_partitions_owned", kind="user") == P
    assert value(reg, "engagement_partitions_owned", kind="account") == P
    info = {"worker": "w-test", "app_id": "engagement", "version": _version()}
    assert value(reg, "engagement_worker_info", **info) == 1
    w.stats["records"] = 7
    assert value(reg, "engagement_records_processed_total") == 7
    assert value(reg, "engagement_records_forwarded_total") == 0
    w.stats["forwarded"] = 5
    assert value(reg, "engagement_records_forwarded_total") == 5
    assert value(reg, "engagement_as_of_timestamp_seconds") == ms(T) / 1000


def test_the_core_heap_is_exported_and_follows_what_the_core_holds(world: World) -> None:
    """`engagement_core_heap_bytes`: the compiled core's own count (native/src/heap.rs), which
    grows with the entities a partition holds and falls back when they are gone."""
    from streams import native_live
    from streams.config import Config

    if not native_live.available():
        if os.environ.get("CI"):
            pytest.fail("the compiled core is not built (CI: the tests must run)")
        pytest.skip("the compiled core is not built")
    before = native_live.core_heap_bytes()
    assert before is not None and before > 0
    part = native_live.NativeLiveAccountPartition(Config(), 0)
    facts = [(f"c{i}", 10**18 + i, 10**18 + i, True, 0, 0.0, "product-events", 0, i, 0)
             for i in range(20_000)]  # fmt: skip
    part.apply(facts, 0)
    held = native_live.core_heap_bytes()
    assert held is not None and held - before > 20_000 * 200  # ~300 bytes a customer
    assert abs(value(world.reg, "engagement_core_heap_bytes") - held) < 1_000_000
    del part
    gc.collect()  # the partition and its engine refer to each other
    after = native_live.core_heap_bytes()
    assert after is not None and after - before < 20_000 * 50


def test_epoch_series_count_what_the_committers_persisted(world: World) -> None:
    import asyncio
    from types import SimpleNamespace

    from agents.epoch import EpochCommitter

    sent: list[tuple[bytes, bytes | None]] = []

    async def send_all(topic: str, p: int, writes: list[Any]) -> int:
        sent.extend(writes)
        return len(sent) - 1

    class Store:
        def write_epoch(self, p: int, writes: Any, offset: int) -> None:
            pass

    async def on_error(exc: BaseException) -> None:
        raise exc

    async def run() -> tuple[EpochCommitter, EpochCommitter]:
        stages = {}
        for stage, epochs in (("users", [{"u1", "u2"}, {"u1"}]), ("accounts", [{"c1"}])):
            c = EpochCommitter(stage, f"{stage}-changelog", send_all, Store, 0.2, on_error)
            for keys in epochs:  # each entity written once per epoch, however often it changed
                ep = c.epoch(0)
                ep.keys |= keys
                ep.marker = 5
                c.close(0, {k: k for k in keys}, str.encode, b"meta", None)
                await c.wait()
            stages[stage] = c
        return stages["users"], stages["accounts"]

    users, accounts = asyncio.run(run())
    w, reg = world.w, world.reg
    w.users = SimpleNamespace(epochs=users)  # type: ignore[attr-defined]
    w.accounts = SimpleNamespace(epochs=accounts)  # type: ignore[attr-defined]
    assert value(reg, "engagement_epochs_committed_total", stage="users") == 2
    assert value(reg, "engagement_epochs_committed_total", stage="accounts") == 1
    assert value(reg, "engagement_epoch_entities_written_total", stage="users") == 3
    assert value(reg, "engagement_epoch_entities_written_total", stage="accounts") == 1
    # meta, the entities, the applied marker: per epoch
    assert value(reg, "engagement_epoch_writes_total", stage="users") == (1 + 2 + 1) + (1 + 1 + 1)
    assert value(reg, "engagement_epoch_writes_total", stage="accounts") == 1 + 1 + 1
    assert len(sent) == 4 + 3 + 3
    for name in (
        "engagement_epoch_serialize_seconds_total",
        "engagement_epoch_commit_seconds_total",
    ):
        assert value(reg, name, stage="users") > 0


def _version() -> str:
    from agents.metrics import _version as v

    return v()


def test_a_partition_that_leaves_leaves_no_series(world: World) -> None:
    w, reg = world.w, world.reg
    gone = owner_of("u1", P)
    kept = 1 - gone
    active_d0 = ("u1", "u2", "u3")  # by hand, see the records
    del w.user_parts[gone]
    del w.acct_parts[gone]
    assert (
        reg.get_sample_value("engagement_records_accepted_total", {"partition": str(gone)}) is None
    )
    for reason in REJECT_REASONS:
        labels = {"partition": str(gone), "reason": reason}
        assert reg.get_sample_value("engagement_records_rejected_total", labels) is None
    assert value(reg, "engagement_records_accepted_total", partition=str(kept)) == sum(
        1 for r in VALID if owner_of(_user(r), P) == kept
    )
    assert value(reg, "engagement_active_users", window="1d") == sum(
        1 for u in active_d0 if owner_of(u, P) == kept
    )
    assert value(reg, "engagement_partitions_owned", kind="user") == 1
    w.user_parts.clear()
    w.acct_parts.clear()
    assert value(reg, "engagement_active_users", window="1d") == 0
    names = {s.name for m in reg.collect() for s in m.samples}
    assert "engagement_records_accepted_total" not in names


def test_exposition_is_valid_prometheus_text(world: World) -> None:
    reg = world.reg
    text = generate_latest(reg).decode()
    families = list(text_string_to_metric_families(text))
    by_name = {f.name: f for f in families}
    assert len(by_name) == len(families)
    for f in families:
        assert f.name.startswith("engagement_")
        if f.type == "counter":
            assert all(s.name.endswith("_total") for s in f.samples)
        else:
            assert not f.name.endswith(("_total", "_count", "_sum", "_bucket")), f.name
            assert not any(u in f.name for u in ("_ms", "_hours", "_minutes", "_pct")), f.name
        for s in f.samples:
            assert not math.isnan(s.value)
            keys = [tuple(sorted(x.labels.items())) for x in f.samples if x.name == s.name]
            assert len(keys) == len(set(keys)), f"repeated series in {s.name}"
    assert by_name["engagement_session_duration_seconds"].type == "histogram"
    assert by_name["engagement_active_users"].type == "gauge"


def test_exposition_content_type_suits_the_web_server(world: World) -> None:
    from aiohttp import web

    body, content_type = exposition(world.reg)
    assert content_type == "text/plain; version=0.0.4"  # the classic format, UTF-8
    web.Response(body=body, content_type=content_type)  # aiohttp refuses "; charset=" there
    assert b"engagement_active_users{" in body


def test_registry_is_passed_in_never_global() -> None:
    import agents.metrics  # noqa: F401  (importing registers nothing)

    names = {s.name for m in prometheus_client.REGISTRY.collect() for s in m.samples}
    assert not any(n.startswith("engagement_") for n in names)
    cfg = Config.from_mapping(CFG)
    a, b = FakeWorker(FakeSettings(cfg), parse_as_of(T)), build(cfg)
    ra, rb = CollectorRegistry(), CollectorRegistry()
    ra.register(EngagementCollector(a))
    rb.register(EngagementCollector(b))
    assert value(ra, "engagement_active_users", window="30d") == 0
    assert value(rb, "engagement_active_users", window="30d") == 5


def test_the_worker_registry_carries_the_process_collectors(world: World) -> None:
    """Issue 15.3: /metrics shows the worker's own health (memory, CPU, fds, GC) next to its
    engagement series, unchanged, and still registers nothing globally."""
    from agents.metrics import worker_registry

    before = {s.name for m in prometheus_client.REGISTRY.collect() for s in m.samples}
    reg = worker_registry(world.w)
    names = {s.name for m in reg.collect() for s in m.samples}
    for name in (
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "python_gc_collections_total",
        "python_gc_objects_collected_total",
        "python_info",
    ):
        assert name in names, name
    assert reg.get_sample_value("process_resident_memory_bytes") > 0
    assert reg.get_sample_value("process_open_fds") > 0
    engagement = {n for n in names if n.startswith("engagement_")}
    alone = CollectorRegistry()
    alone.register(EngagementCollector(world.w))
    assert engagement == {s.name for m in alone.collect() for s in m.samples}
    assert {s.name for m in prometheus_client.REGISTRY.collect() for s in m.samples} == before
    text, _ = exposition(reg)
    assert b"process_resident_memory_bytes " in text


def test_allow_lists_in_the_configuration() -> None:
    default = Config()
    assert default.metric_touchpoints == ("support", "checkout", "onboarding", "email", "in_app")
    assert default.metric_features == ()
    c = Config.from_toml_text('[metrics]\ntouchpoints = ["a", "b", "a"]\nfeatures = ["search"]\n')
    assert (c.metric_touchpoints, c.metric_features) == (("a", "b"), ("search",))
    assert Config.from_mapping(c.to_mapping()) == c
    assert fold("search", c.metric_features) == "search" and fold("x", c.metric_features) == "other"
    for bad in (
        "metrics = 1",
        "[metrics]\ncolour = []",
        '[metrics]\ntouchpoints = "support"',
        '[metrics]\nfeatures = [""]',
        "[metrics]\nfeatures = [1]",
        '[metrics]\ntouchpoints = ["none"]',
        '[metrics]\nfeatures = ["other"]',
    ):
        with pytest.raises(ConfigError, match="metrics"):
            Config.from_toml_text(bad)
    # every feature folds into other with the default (empty) allow-list
    w = build(Config())
    reg = CollectorRegistry()
    reg.register(EngagementCollector(w))
    assert value(reg, "engagement_feature_users", feature="other") == 2
    assert (
        value(reg, "engagement_survey_responses", survey="csat", window="1h", touchpoint="checkout")
        == 1
    )


# ---- consumer lag (cached consumer state only) ---------------------------------------------------


@dataclass(frozen=True, order=True)
class TP:
    topic: str
    partition: int


class _State:
    def __init__(self, position: int | None) -> None:
        self.has_valid_position = position is not None
        self.position = position


class FakeAiokafka:
    """The parts of an AIOKafkaConsumer the collector reads."""

    def __init__(self, tps: dict[TP, tuple[int | None, int | None]]) -> None:
        self.tps = tps  # tp -> (highwater, position)
        outer = self

        class _Assignment:
            def state_value(self, tp: TP) -> _State:
                return _State(outer.tps[tp][1])

        class _Sub:
            assignment = _Assignment()

        class _Subscription:
            subscription = _Sub()

        self._subscription = _Subscription()

    def assignment(self) -> set[TP]:
        return set(self.tps)

    def highwater(self, tp: TP) -> int | None:
        if tp.topic == "broken":
            raise AssertionError("Partition is not assigned")
        return self.tps[tp][0]


def test_intake_lag_from_cached_positions(world: World) -> None:
    w, reg = world.w, world.reg
    w.intake_consumer = FakeAiokafka(
        {
            TP("product-events", 0): (120, 100),
            TP("product-events", 1): (50, 50),
            TP("survey-answers", 0): (None, 3),  # no fetch yet: unknown, not exported
            TP("survey-answers", 1): (9, None),  # no position yet
            TP("broken", 0): (1, 0),  # revoked meanwhile: skipped, the scrape still works
        }
    )
    lag = "engagement_consumer_lag_records"
    assert value(reg, lag, stage="intake", topic="product-events", partition="0") == 20
    assert value(reg, lag, stage="intake", topic="product-events", partition="1") == 0
    assert (
        reg.get_sample_value(lag, {"stage": "intake", "topic": "survey-answers", "partition": "0"})
        is None
    )
    assert (
        reg.get_sample_value(lag, {"stage": "intake", "topic": "survey-answers", "partition": "1"})
        is None
    )
    assert (
        reg.get_sample_value(lag, {"stage": "intake", "topic": "broken", "partition": "0"}) is None
    )
    assert value(reg, "engagement_active_users", window="1d") == 3


class _Topic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


def test_faust_stage_lag_from_read_offsets() -> None:
    class Consumer:
        def __init__(self) -> None:
            self._committed_offset = {TP("b", 0): 6, TP("f", 1): 30}  # next offset to process
            self._read_offset = {TP("b", 0): 9, TP("f", 1): 41, TP("f", 2): 3}  # last read
            self._thread = type("T", (), {"_consumer": FakeAiokafka({TP("b", 1): (7, 5)})})()

        def highwater(self, tp: TP) -> int:
            return {TP("b", 0): 15, TP("b", 1): 7, TP("f", 1): 42, TP("f", 2): 4}.get(tp, 99)

    class Assignor:
        def assigned_actives(self) -> set[TP]:
            return {TP("b", 0), TP("b", 1), TP("f", 1), TP("f", 2), TP("users-changelog", 0)}

    app = type("App", (), {"_consumer": Consumer(), "assignor": Assignor()})()
    w = type("W", (), {"app": app, "batches_topic": _Topic("b"), "facts_topic": _Topic("f")})()
    # b/0: committed 6 of [0, 15) -> 9 (what was read into the buffer is not processed yet);
    # b/1: nothing committed nor read, fetch position 5 of [0, 7) -> 2; f/1: committed 30 of
    # [0, 42) -> 12; f/2: nothing committed, read up to 3 of [0, 4) -> 0; the changelog: no stage
    assert sorted(consumer_lags(w)) == [
        ("accounts", "f", 1, 12),
        ("accounts", "f", 2, 0),
        ("users", "b", 0, 9),
        ("users", "b", 1, 2),
    ]
    w.app._consumer = None  # not started: no lag, no error
    assert consumer_lags(w) == []
