"""State is bounded: sweeping expired state never changes a snapshot, and it does forget."""

from __future__ import annotations

import json
from typing import Any

from streams.config import Config
from streams.replay import Replayer
from streams.simulate import SimConfig, simulate
from streams.timeutil import DAY, HOUR, MS, parse_as_of
from tests.unit.records_builder import ev, ms


def _lines(days: int, users: int, rate: float, seed: int) -> list[bytes]:
    start = ms("2026-09-01T00:00:00Z")
    cfg = SimConfig(start_ms=start, duration_s=days * 86400, users=users, rate=rate, seed=seed)
    return [json.dumps(e).encode() for e in simulate(cfg)]


def _run(
    lines: list[bytes], as_of: str, sweep_every: int, **cfg: Any
) -> tuple[dict[str, Any], Replayer]:
    r = Replayer(Config.from_mapping(cfg), parse_as_of(as_of), sweep_every=sweep_every)
    for i, raw in enumerate(lines, 1):
        r.line(raw)
        if sweep_every and i % sweep_every == 0:
            r.pipeline.sweep()
    if sweep_every:
        r.pipeline.sweep()
    return r.snapshot(), r


def test_sweeping_never_changes_the_snapshot() -> None:
    lines = _lines(days=70, users=300, rate=0.004, seed=7)  # ~24k records over 70 days
    end = json.loads(lines[-1])["ts"]
    for as_of_ms in (end, end - 3 * 86_400_000, end + 86_400_000):
        as_of = str(as_of_ms)
        plain, _ = _run(lines, as_of, sweep_every=0)
        swept, _ = _run(lines, as_of, sweep_every=997)
        assert swept == plain
    assert plain["accepted"] > 10_000


def test_sweep_forgets_what_no_window_reaches() -> None:
    t0 = "2026-09-01T00:00:00Z"
    lines = [
        ev("e1", "page_view", "old", t0, session_id="s"),
        ev("e2", "signup", "keeper", t0),
        ev("e3", "purchase", "buyer", t0, props={"order_id": "o", "amount": 1}),
        ev("e4", "ticket_opened", "opener", t0, props={"ticket_id": "t", "category": "c"}),
    ]
    r = Replayer(Config(), parse_as_of("2027-01-01T00:00:00Z"))
    r.feed(lines)
    # a record 100 days later moves the watermark; then sweep
    r.feed([ev("e5", "page_view", "new", "2026-12-10T00:00:00Z", session_id="s")])
    up = r.pipeline.users[0]
    up.sweep()
    users = up.users
    assert "old" not in users  # only expired state: the user is gone
    assert "buyer" not in users  # order past 90d + lateness
    assert users["keeper"].signup == ms(t0) * MS  # a signup instant is never forgotten
    assert users["keeper"].ids == {}
    assert users["opener"].tickets == {"t": [ms(t0) * MS, None]}  # an open ticket is kept
    assert set(users["new"].ids) == {"e5"}


def test_identity_horizon() -> None:
    # an event id is remembered until F passes ts + lateness + 1 h (F = W here: no fold margin)
    lateness = 2
    base = ms("2026-11-01T00:00:00Z")
    r = Replayer(
        Config(allowed_lateness_hours=lateness, fold_margin_seconds=0.0),
        parse_as_of("2027-01-01T00:00:00Z"),
    )
    r.feed([ev("a", "page_view", "u", "2026-11-01T00:00:00Z", session_id="s")])
    up = r.pipeline.users[0]
    up.see_record_ts((base + 3 * 3600 * 1000) * MS)  # exactly ts + lateness + 1h
    up.sweep()
    assert "a" in up.users["u"].ids
    up.see_record_ts((base + 3 * 3600 * 1000 + 1) * MS)
    up.sweep()
    assert "a" not in up.users["u"].ids
    assert up.fold <= base * MS + 3 * HOUR + DAY
