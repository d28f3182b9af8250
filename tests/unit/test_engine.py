"""Hand-computed expectations per metric family, at the edges of windows and days.

Expected values are worked out by hand in the comments, never taken from running the engine.
"""

from __future__ import annotations

from typing import Any

import pytest

from streams.config import Config
from streams.replay import replay_lines
from tests.unit.records_builder import ans, ev, line, ms

T = "2026-11-20T12:00:00Z"  # a Friday; D0 = 2026-11-20 in UTC


def snap(lines: list[bytes], as_of: str = T, partitions: int = 1, **cfg: Any) -> dict[str, Any]:
    result = replay_lines(lines, Config.from_mapping(cfg), as_of, partitions)
    for n in (2, 5):  # every metric must be the same whatever the partitioning
        assert replay_lines(lines, Config.from_mapping(cfg), as_of, n) == result
    return result


def pv(eid: str, user: str, ts: str, **kw: Any) -> bytes:
    return ev(eid, "page_view", user, ts, session_id=kw.pop("session_id", "s-" + eid), **kw)


# ---- activity ---------------------------------------------------------------------------------


def test_dau_wau_mau_window_edges() -> None:
    lines = [
        pv("1", "a", "2026-11-20T00:00:00Z"),  # D0 start: dau
        pv("2", "b", "2026-11-19T23:59:59.999Z"),  # D0-1
        pv("3", "c", "2026-11-14T00:00:00Z"),  # D0-6: in wau
        pv("4", "d", "2026-11-13T23:59:59Z"),  # D0-7: not in wau, in mau
        pv("5", "e", "2026-10-22T00:00:00Z"),  # D0-29: in mau
        pv("6", "f", "2026-10-21T23:59:59Z", rts="2026-10-22T00:00:00Z"),  # D0-30: out
        pv("7", "g", "2026-11-20T12:00:00.001Z"),  # after T: does not count yet
        ev("8", "impression", "h", "2026-11-20T10:00:00Z"),  # inactive by default
    ]
    s = snap(lines)
    assert (s["dau"], s["wau"], s["mau"]) == (1, 3, 5)
    assert s["stickiness_pct"] == pytest.approx(20.0)  # 1 / 5
    assert s["accepted"] == 8


def test_days_in_a_non_utc_zone_across_dst() -> None:
    # America/New_York, T = 2026-11-02T12:00:00-05:00 (EST). D0 = Nov 2; Nov 1 is 25 h long
    # (00:00 EDT = 04:00Z to 00:00 EST = 05:00Z next day).
    t = "2026-11-02T17:00:00Z"
    lines = [
        pv("1", "a", "2026-11-02T04:59:59Z"),  # 23:59:59 EST on Nov 1 -> D0-1
        pv("2", "b", "2026-11-02T05:00:00Z"),  # 00:00 EST Nov 2 -> D0
        pv("3", "c", "2026-11-01T04:00:00Z"),  # 00:00 EDT Nov 1 -> D0-1
        pv("4", "d", "2026-11-01T03:59:59Z"),  # Oct 31 23:59:59 EDT -> D0-2
    ]
    s = snap(lines, t, timezone="America/New_York")
    assert s["dau"] == 1
    assert s["lifecycle"] == {"new": 0, "returning": 0, "resurrecting": 1, "dormant": 2}
    s_utc = snap(lines, t)  # in UTC, a and b are both on Nov 2
    assert s_utc["dau"] == 2


def test_lifecycle() -> None:
    lines = [
        ev("1", "signup", "new", "2026-11-20T01:00:00Z"),
        pv("2", "ret", "2026-11-19T10:00:00Z"),
        pv("3", "ret", "2026-11-20T10:00:00Z"),
        pv("4", "res", "2026-11-10T10:00:00Z"),
        pv("5", "res", "2026-11-20T10:00:00Z"),
        pv("6", "dor", "2026-11-19T10:00:00Z"),
        # signed up on D0 but after T: not new yet; active on D0 via an earlier event
        pv("7", "late", "2026-11-20T09:00:00Z"),
        ev("8", "signup", "late", "2026-11-20T13:00:00Z", rts="2026-11-20T12:30:00Z"),
    ]
    s = snap(lines)
    assert s["lifecycle"] == {"new": 1, "returning": 1, "resurrecting": 2, "dormant": 1}
    assert s["dau"] == 4


def test_feature_adoption() -> None:
    lines = [
        ev("1", "feature_used", "a", "2026-11-20T10:00:00Z", props={"feature": "search"}),
        ev("2", "feature_used", "b", "2026-10-22T10:00:00Z", props={"feature": "search"}),
        ev(
            "3",
            "feature_used",
            "b",
            "2026-10-21T10:00:00Z",
            rts="2026-10-22T10:00:00Z",
            props={"feature": "export"},
        ),  # D0-30: out of the window
        pv("4", "c", "2026-11-20T10:00:00Z"),
        pv("5", "d", "2026-11-20T10:00:00Z"),
    ]
    s = snap(lines)
    assert s["mau"] == 4
    assert s["feature_adoption_pct"] == {"search": pytest.approx(50.0)}


# ---- surveys -----------------------------------------------------------------------------------


def test_csat_nps_ces_windows_and_touchpoints() -> None:
    lines = [
        ans("1", "csat", 5, "a", "2026-11-20T12:00:00Z", touchpoint="support"),  # age 0: in 1h
        ans("2", "csat", 3, "b", "2026-11-20T11:00:00Z"),  # age exactly 1h: out of 1h, in 24h
        ans(
            "3", "csat", 4, "c", "2026-11-19T12:00:00Z", rts="2026-11-19T12:00:00Z"
        ),  # age 24h: out of 24h
        ans("4", "csat", 1, "d", "2026-11-19T12:00:00.001Z"),  # in 24h
        ans("5", "nps", 10, "a", "2026-11-19T00:00:00Z", touchpoint="support"),
        ans("6", "nps", 8, "b", "2026-11-18T00:00:00Z"),
        ans("7", "nps", 3, "c", "2026-11-01T00:00:00Z", touchpoint="email"),  # 30d only
        ans("8", "ces", 2, "a", "2026-11-19T00:00:00Z"),
        ans("9", "ces", 7, "b", "2026-10-25T00:00:00Z"),  # 30d only
        ans("10", "nps", 9, "e", "2026-11-20T12:00:01Z", rts="2026-11-20T12:00:00Z"),  # after T
    ]
    s = snap(lines)
    assert s["csat_pct_1h"] == pytest.approx(100.0)  # {5}
    assert s["csat_pct_24h"] == pytest.approx(100 / 3)  # {5, 3, 1}: 1 positive
    assert s["csat_responses_24h"] == 3
    assert s["csat_pct_7d"] == pytest.approx(50.0)  # {5, 3, 4, 1}
    assert s["nps_7d"] == pytest.approx(50.0)  # {10, 8}: (1 - 0) / 2
    assert s["nps_30d"] == pytest.approx(0.0)  # {10, 8, 3}: (1 - 1) / 3
    assert s["nps_responses_30d"] == 3
    assert s["ces_avg_7d"] == pytest.approx(2.0)
    assert s["ces_avg_30d"] == pytest.approx(4.5)
    assert set(s["by_touchpoint"]) == {"support", "email"}
    sup = s["by_touchpoint"]["support"]
    assert sup["csat_pct_1h"] == pytest.approx(100.0) and sup["nps_7d"] == pytest.approx(100.0)
    assert sup["ces_avg_30d"] is None and sup["csat_responses_24h"] == 1
    assert s["by_touchpoint"]["email"]["nps_30d"] == pytest.approx(-100.0)
    # signals: csat 1 at 23h59m ago (24h); no detractor in 24h
    assert s["churn_signals_24h"]["csat_negative"] == 1
    assert s["churn_signals_1h"]["csat_negative"] == 0


# ---- onboarding --------------------------------------------------------------------------------


def test_activation_and_first_week_return() -> None:
    # mature cohort: signup day in D0-13 .. D0-7 = Nov 7 .. Nov 13
    lines = [
        ev("1", "signup", "a", "2026-11-07T10:00:00Z"),
        ev("2", "profile_completed", "a", "2026-11-07T11:00:00Z"),
        ev("3", "key_action", "a", "2026-11-14T09:59:59.999Z"),  # S + 7d - 1 ms: in
        ev("4", "signup", "b", "2026-11-13T10:00:00Z"),
        ev("5", "profile_completed", "b", "2026-11-13T10:00:00Z"),
        ev("6", "key_action", "b", "2026-11-20T10:00:00Z"),  # exactly S + 7d: out
        pv("7", "b", "2026-11-14T00:00:00Z"),  # day after signup day, before S+7d: returned
        ev("8", "signup", "c", "2026-11-06T10:00:00Z"),  # D0-14: not mature
        ev("9", "key_action", "d", "2026-11-10T09:00:00Z"),  # before the signup: does not count
        ev("10", "signup", "d", "2026-11-10T10:00:00Z", rts="2026-11-10T10:00:00Z"),
        ev("11", "profile_completed", "d", "2026-11-10T10:00:00Z"),
        ev(
            "12", "signup", "d", "2026-11-01T10:00:00Z", rts="2026-11-02T10:00:00Z"
        ),  # later signup: S stays
    ]
    s = snap(lines)
    # cohort {a, b, d}; activated: a only; returned: a (key_action on Nov 14 < S+7d), b
    assert s["first_week_activation_pct"] == pytest.approx(100 / 3)
    assert s["first_week_return_pct"] == pytest.approx(200 / 3)


def test_ttfv_lower_median_and_funnel() -> None:
    lines: list[bytes] = []
    for i, hours in enumerate([4, 1, 3, 2]):  # durations 1,2,3,4 h -> lower median 2 h
        u = f"u{i}"
        lines.append(ev(f"s{i}", "signup", u, "2026-11-10T00:00:00Z"))
        lines.append(ev(f"k{i}", "key_action", u, f"2026-11-10T{hours:02d}:00:00Z"))
        lines.append(ev(f"k2{i}", "key_action", u, f"2026-11-10T{hours + 5:02d}:00:00Z"))
    # a key_action arriving later but earlier in time is the earliest (by ts, not arrival)
    lines.append(ev("x", "key_action", "u0", "2026-11-10T00:30:00Z", rts="2026-11-10T09:00:00Z"))
    # funnel: u0 welcome, profile; u1 welcome, tour (skips); u2 nothing
    for eid, u, step in [
        ("f1", "u0", "welcome"),
        ("f2", "u0", "profile"),
        ("f3", "u1", "welcome"),
        ("f4", "u1", "tour"),
        ("f5", "u1", "unknown-step"),
    ]:
        lines.append(ev(eid, "onboarding_step", u, "2026-11-10T12:00:00Z", props={"step": step}))
    lines.append(
        ev(
            "f6",
            "onboarding_step",
            "u3",
            "2026-11-09T12:00:00Z",
            rts="2026-11-10T12:00:00Z",
            props={"step": "welcome"},
        )
    )  # before S: does not count
    s = snap(lines)
    # durations: u0 0.5 h, u1 1 h, u2 3 h, u3 2 h -> sorted .5,1,2,3 -> lower median 1 h
    assert s["ttfv_median_hours"] == pytest.approx(1.0)
    assert s["funnel_reached"] == {"welcome": 2, "profile": 1, "invite": 0, "tour": 1, "done": 0}
    assert s["funnel_dropoff_pct"] == {
        "welcome": pytest.approx(50.0),
        "profile": pytest.approx(100.0),
        "invite": None,
        "tour": pytest.approx(100.0),
    }


def test_day_n_retention() -> None:
    # d1 cohort: signup day in D0-8 .. D0-2 = Nov 12 .. Nov 18; retained if active on signup day + 1
    lines = [
        ev("1", "signup", "a", "2026-11-12T10:00:00Z"),
        pv("2", "a", "2026-11-13T23:00:00Z"),
        ev("3", "signup", "b", "2026-11-18T10:00:00Z"),
        pv("4", "b", "2026-11-20T10:00:00Z"),  # day + 2: not d1-retained
        ev("5", "signup", "c", "2026-11-19T10:00:00Z"),  # D0-1: not in the d1 cohort
        # d7 cohort: Nov 6 .. Nov 12 -> a (signup Nov 12, active Nov 19?) no; e yes
        ev("6", "signup", "e", "2026-11-06T10:00:00Z"),
        pv("7", "e", "2026-11-13T01:00:00Z"),
    ]
    s = snap(lines)
    assert s["d1_retention_pct"] == pytest.approx(50.0)
    assert s["d7_retention_pct"] == pytest.approx(50.0)  # {a, e}: e retained
    assert s["d30_retention_pct"] is None


# ---- subscriptions and commerce -----------------------------------------------------------------


def test_subscription_churn_with_tie() -> None:
    t30 = "2026-10-21T12:00:00Z"  # T - 30d
    lines = [
        ev(
            "1",
            "subscription_started",
            "a",
            "2026-10-01T00:00:00Z",
            rts="2026-10-01T00:00:00Z",
            account_id="acme",
        ),
        ev("2", "subscription_started", "b", "2026-10-02T00:00:00Z", account_id="beta"),
        ev("3", "subscription_cancelled", "b", "2026-11-01T00:00:00Z", account_id="beta"),
        ev("4", "subscription_started", "c", "2026-11-05T00:00:00Z"),  # customer "c": new
        ev("5", "subscription_started", "d", t30),  # exactly at T-30d: subscribed at T-30d
        ev("6", "subscription_started", "e", "2026-11-10T00:00:00Z"),
        ev("7", "subscription_cancelled", "e", "2026-11-10T00:00:00Z"),  # same ts: cancel wins
        ev(
            "8", "subscription_started", "a2", "2026-11-11T00:00:00Z", account_id="acme"
        ),  # still acme
    ]
    s = snap(lines)
    # start = {acme, beta, d}; end = {acme, c, d}; lost = {beta}; new = {c}
    assert s["subscribers"] == 3
    assert s["churn_rate_pct_30d"] == pytest.approx(100 / 3)
    assert s["retention_rate_pct_30d"] == pytest.approx(200 / 3)
    assert s["churn_signals_24h"]["cancellation"] == 0


def test_commerce() -> None:
    def buy(eid: str, user: str, ts: str, order: str, amount: float, **kw: Any) -> bytes:
        return ev(eid, "purchase", user, ts, props={"order_id": order, "amount": amount}, **kw)

    lines = [
        buy("1", "a", "2026-11-19T00:00:00Z", "o1", 10.0, account_id="acme"),
        buy("2", "b", "2026-11-01T00:00:00Z", "o2", 30.0, account_id="acme"),  # acme: 2 orders
        buy("3", "a", "2026-11-19T01:00:00Z", "o1", 99.0, account_id="acme"),  # same order: ignored
        buy("4", "c", "2026-08-22T12:00:00Z", "o3", 5.0),  # exactly T-90d: out
        buy("5", "c", "2026-11-15T00:00:00Z", "o4", 20.0),
        ev("6", "return", "c", "2026-11-16T00:00:00Z", props={"order_id": "o4"}),
        ev("7", "return", "c", "2026-11-17T00:00:00Z", props={"order_id": "o4"}),  # same order
        ev("8", "return", "z", "2026-11-17T00:00:00Z", props={"order_id": "o9"}),  # purchase unseen
        # churn for the CLV: one of two subscribers lost
        ev("9", "subscription_started", "s1", "2026-10-01T00:00:00Z"),
        ev("10", "subscription_started", "s2", "2026-10-01T00:00:00Z"),
        ev("11", "subscription_cancelled", "s2", "2026-11-01T00:00:00Z"),
    ]
    s = snap(lines)
    assert s["orders_90d"] == 3  # o1, o2, o4
    assert s["revenue_90d"] == pytest.approx(60.0)
    assert s["aov_90d"] == pytest.approx(20.0)
    assert s["repeat_purchase_rate_pct_90d"] == pytest.approx(50.0)  # acme 2 orders, c 1
    assert s["return_rate_pct_90d"] == pytest.approx(200 / 3)  # (c,o4), (z,o9) / 3
    assert s["churn_rate_pct_30d"] == pytest.approx(50.0)
    # revenue in 30d = 60 over customers {acme, c} = 30; / 0.5 = 60
    assert s["clv_estimate"] == pytest.approx(60.0)


# ---- web and support ----------------------------------------------------------------------------


def test_sessions_bounce_ctr_social() -> None:
    def sess(eid: str, typ: str, ts: str, sid: str, user: str = "a", **kw: Any) -> bytes:
        return ev(eid, typ, user, ts, session_id=sid, **kw)

    lines = [
        sess("1", "session_start", "2026-11-20T10:00:00Z", "s1"),
        sess("2", "page_view", "2026-11-20T10:01:00Z", "s1"),
        sess("3", "session_end", "2026-11-20T10:10:00Z", "s1"),  # 600 s, bounce
        sess("4", "session_start", "2026-11-19T11:00:00Z", "s2"),
        sess("5", "page_view", "2026-11-19T11:00:00Z", "s2"),
        sess("6", "page_view", "2026-11-19T11:01:00Z", "s2"),
        sess("7", "session_end", "2026-11-19T12:00:00.001Z", "s2"),  # in 24h; 3600.001 s
        sess("8", "session_end", "2026-11-19T12:00:00Z", "s3"),  # exactly T-24h: out
        sess("9", "session_end", "2026-11-20T11:00:00Z", "s4"),  # no start, no page view
        sess("10", "session_end", "2026-11-20T11:30:00Z", "s4"),  # second end: ignored
        sess(
            "11", "page_view", "2026-11-20T12:30:00Z", "s1", rts="2026-11-20T12:00:00Z"
        ),  # after T
        ev("12", "impression", "a", "2026-11-20T09:00:00Z"),
        ev("13", "impression", "a", "2026-11-20T09:00:00Z"),
        ev("14", "click", "a", "2026-11-20T09:00:01Z"),
        ev("15", "social_interaction", "a", "2026-11-20T09:00:00Z", props={"action": "share"}),
    ]
    s = snap(lines)
    assert s["sessions_24h"] == 3  # s1, s2, s4
    assert s["avg_session_duration_s_24h"] == pytest.approx((600 + 3600.001) / 2)
    assert s["bounce_rate_pct_24h"] == pytest.approx(100 / 3)  # s1 only
    assert s["ctr_pct_24h"] == pytest.approx(50.0)
    assert s["social_interactions_24h"] == {
        "like": 0,
        "share": 1,
        "comment": 0,
        "mention": 0,
        "save": 0,
    }


def test_support() -> None:
    def tk(eid: str, typ: str, user: str, ts: str, tid: str, **kw: Any) -> bytes:
        props = (
            {"ticket_id": tid, "category": "billing"}
            if typ == "ticket_opened"
            else {"ticket_id": tid}
        )
        return ev(eid, typ, user, ts, props=props, **kw)

    lines = [
        tk("1", "ticket_opened", "a", "2026-11-20T10:00:00Z", "t1"),
        tk("2", "ticket_resolved", "a", "2026-11-20T11:30:00Z", "t1"),  # 1.5 h
        tk("3", "ticket_opened", "a", "2026-11-15T10:00:00Z", "t2", rts="2026-11-15T10:00:00Z"),
        tk("4", "ticket_resolved", "a", "2026-11-15T14:00:00Z", "t2"),  # 4 h
        tk("5", "ticket_opened", "b", "2026-11-19T12:00:00Z", "t1"),  # another user's t1: open
        tk("6", "ticket_resolved", "c", "2026-11-20T11:00:00Z", "t9"),  # opening never seen
        tk("7", "ticket_opened", "a", "2026-11-20T11:00:00Z", "t1"),  # second opening: ignored
        tk("8", "ticket_resolved", "d", "2026-11-20T13:00:00Z", "t3", rts="2026-11-20T12:30:00Z"),
        tk("9", "ticket_opened", "d", "2026-11-20T09:00:00Z", "t3"),  # resolved after T: open
    ]
    s = snap(lines)
    assert s["tickets_opened_24h"] == 2  # (a,t1) at 10:00, (d,t3); (b,t1) is exactly T-24h
    assert s["open_tickets"] == 2  # (b,t1), (d,t3)
    assert s["avg_resolution_hours_7d"] == pytest.approx(2.75)


# ---- health and signals --------------------------------------------------------------------------


def test_health_and_dormant_signal() -> None:
    lines = [
        # acme: users a and b; last activity 6 h before T; active days Nov 19, 20 -> 2 days;
        # latest NPS 8 (a 9 has an earlier ts though it arrives later)
        pv("1", "a", "2026-11-19T10:00:00Z", account_id="acme"),
        pv("2", "b", "2026-11-20T06:00:00Z", account_id="acme"),
        ans("3", "nps", 8, "a", "2026-11-20T07:00:00Z", account_id="acme"),
        ans(
            "4",
            "nps",
            9,
            "b",
            "2026-11-20T05:00:00Z",
            rts="2026-11-20T07:00:00Z",
            account_id="acme",
        ),
        # solo: a survey answer only (no activity): recency 0, frequency 0, CSAT 2 -> 0.25
        ans("5", "csat", 2, "solo", "2026-11-20T08:00:00Z"),
        # dormant: last activity exactly 14 days + 30 minutes before T -> signal in 1h and 24h
        pv("6", "sleepy", "2026-11-06T11:30:00Z", rts="2026-11-06T11:30:00Z"),
    ]
    s = snap(lines)
    # acme: recency = 1 - 0.25/30; frequency = 2/20; sentiment 0.8
    acme = 100 * (0.4 * (1 - 0.25 / 30) + 0.3 * 0.1 + 0.3 * 0.8)
    # solo: 100 * 0.3 * 0.25 = 7.5
    # sleepy: recency = 1 - 14.0208333/30; frequency 0 (Nov 6 is D0-14... counts: 1 day -> 0.05)
    sleepy = 100 * (0.4 * (1 - (14 + 0.5 / 24) / 30) + 0.3 * 0.05 + 0.3 * 0.5)
    assert s["health_avg"] == pytest.approx((acme + 7.5 + sleepy) / 3)
    assert s["customers_at_risk"] == 2  # solo 7.5, sleepy ~37.8; acme ~62.7
    assert s["churn_signals_1h"]["dormant"] == 1
    assert s["churn_signals_24h"]["dormant"] == 1


def test_health_threshold_is_exact() -> None:
    # recency 0.25 (22.5 days), frequency 0 ... but activity gives one active day: 0.05.
    # Use an NPS 10 and a last activity 22.5 + 0.75 days ago: 0.4 * r = 0.4 * (1 - 23.25/30) = 0.09
    # health = 100 * (0.09 + 0.3 * 0.05 + 0.3 * 1.0) = 40.5 -> not at risk; with 24 days ago:
    # r = 0.2 -> 100 * (0.08 + 0.015 + 0.3) = 39.5 -> at risk
    lines = [
        pv("1", "a", "2026-10-28T06:00:00Z", rts="2026-10-28T06:00:00Z"),  # 23.25 days before T
        ans("2", "nps", 10, "a", "2026-11-20T00:00:00Z"),
        pv("3", "b", "2026-10-27T12:00:00Z", rts="2026-10-28T06:00:00Z"),  # 24 days before T
        ans("4", "nps", 10, "b", "2026-11-20T00:00:00Z"),
    ]
    s = snap(lines)
    assert s["customers_at_risk"] == 1
    assert s["health_avg"] == pytest.approx(40.0)


# ---- pipeline health, duplicates and redelivery ------------------------------------------------


def test_counts_duplicates_and_redelivery() -> None:
    lines = [
        line(
            "product-events",
            {"event_id": "e", "type": "signup", "user_id": "u", "ts": T},
            ms(T),
            partition=0,
            offset=5,
        ),
        # same (user, event_id), other content: duplicate
        line(
            "product-events",
            {
                "event_id": "e",
                "type": "purchase",
                "user_id": "u",
                "ts": T,
                "props": {"order_id": "o", "amount": 1},
            },
            ms(T),
            partition=0,
            offset=6,
        ),
        # same event_id for another user: a different event
        line(
            "product-events",
            {"event_id": "e", "type": "signup", "user_id": "v", "ts": T},
            ms(T),
            partition=1,
            offset=0,
        ),
        # a redelivery of offset 6: nothing at all
        line(
            "product-events",
            {"event_id": "x", "type": "signup", "user_id": "w", "ts": T},
            ms(T),
            partition=0,
            offset=6,
        ),
        # a too_late copy of a known id is too_late, not a duplicate
        line(
            "product-events",
            {"event_id": "e", "type": "signup", "user_id": "u", "ts": "2026-11-10T00:00:00Z"},
            ms(T),
            partition=0,
            offset=7,
        ),
        line(
            "product-events",
            {"event_id": "f", "type": "signup", "user_id": "u", "ts": "2026-11-20T13:00:00.001Z"},
            ms(T),
            partition=0,
            offset=8,
        ),
        line("product-events", "{not json", ms(T), partition=0, offset=9),
        line("product-events", {"event_id": "g"}, ms(T), partition=0, offset=10),
        line("product-events", "x" * 70_000, ms(T), partition=0, offset=11),
        line("other-topic", {"anything": 1}, ms(T), partition=0, offset=0),  # skipped
        b"this is not an envelope",
        b'{"topic": "product-events", "ts": "not an int", "payload": "{}"}',
        b"\xff\xfe",
        b"",
        # the survey topic has its own id space
        line(
            "survey-answers",
            {"response_id": "e", "survey": "ces", "score": 3, "user_id": "u", "ts": T},
            ms(T),
            partition=0,
            offset=0,
        ),
    ]
    s = snap(lines)
    assert s["accepted"] == 3
    assert s["duplicates"] == 1
    assert s["rejected"] == {"too_large": 1, "bad_json": 4, "schema": 1, "future": 1, "too_late": 1}
    assert s["dau"] == 2  # u and v
    assert s["orders_90d"] == 0


def test_as_of_before_everything_and_empty_input() -> None:
    s = snap([pv("1", "a", "2026-11-20T10:00:00Z")], "2026-01-01T00:00:00Z")
    assert s["dau"] == 0 and s["mau"] == 0 and s["accepted"] == 1
    assert s["health_avg"] is None and s["stickiness_pct"] is None
    assert s["as_of"] == "2026-01-01T00:00:00Z"
    e = snap([])
    assert e["revenue_90d"] == 0 and e["accepted"] == 0
    assert set(e["churn_signals_24h"]) == {
        "cancellation",
        "nps_detractor",
        "csat_negative",
        "dormant",
    }
