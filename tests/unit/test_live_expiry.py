"""Expiry in the live partitions (docs/architecture.md, "Expiry in the live worker"): the state
and the table stay bounded in a flood of unique users, and a sweep cut short by a crash is
completed when its message is redelivered."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from streams.codec import decode_meta, decode_user, encode_meta, encode_user
from streams.config import Config
from streams.live import (
    IDLE_SOURCE_SECONDS,
    SWEEP_EVERY,
    Batch,
    LiveUserPartition,
    Meta,
    Output,
    sweep_point,
)
from streams.timeutil import DAY, HOUR, MS
from tests.unit.records_builder import ms

START = ms("2026-09-01T00:00:00Z")


def _record(offset: int, user: str, eid: str, ts_ms: int) -> tuple[int, int, bytes, bytes]:
    ts = datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")
    value = {"event_id": eid, "type": "page_view", "user_id": user, "ts": ts, "session_id": "s"}
    return (offset, ts_ms, user.encode(), json.dumps(value).encode())


def _write(table: dict[str, bytes], part: LiveUserPartition, out: Output) -> None:
    """The runtime's writes: the dirty users, then the users the sweep removed."""
    for uid in out.dirty:
        table[uid] = encode_user(part.users[uid])
    for uid in out.deleted:
        table.pop(uid, None)


def test_state_and_table_stay_bounded_in_a_flood_of_unique_users() -> None:
    cfg = Config()
    lateness = cfg.lateness_ns
    n, days, per_batch = 3000, 40, 25
    step_ms = days * 86_400_000 // n  # one new user (one page view, one new event id) each step
    part = LiveUserPartition(cfg, 0, 1, 1)
    table: dict[str, bytes] = {}
    most = 0
    deleted = 0
    recs = [_record(i, f"u{i}", f"e{i}", START + i * step_ms) for i in range(n)]
    assert part.apply(Batch("product-events", 0, recs[:1])).applied == 1  # a valid record
    part = LiveUserPartition(cfg, 0, 1, 1)
    for msg, i in enumerate(range(0, n, per_batch)):
        out = part.apply(Batch("product-events", 0, recs[i : i + per_batch]), msg)
        _write(table, part, out)
        deleted += len(out.deleted)
        users = part.users
        # the table holds exactly what memory holds
        assert set(table) == set(users)
        most = max(most, len(users))
        f = part.engine.fold
        # docs/architecture.md: users are kept ~32 days (31 days of activity days, counted in
        # local days), event ids lateness + 1 h; a sweep runs at the latest multiple of
        # SWEEP_EVERY before F, once per message (a message spans at most one step * per_batch)
        lag = SWEEP_EVERY + per_batch * step_ms * MS
        for j in range(min(i + per_batch, n)):
            ts = (START + j * step_ms) * MS
            uid = f"u{j}"
            if ts >= f - 31 * DAY:  # inside every window: still there
                assert uid in users
            if ts < f - 32 * DAY - lag:  # past every horizon: gone from memory and table
                assert uid not in users
            if uid in users:
                ids = users[uid].ids
                if ts >= f - lateness:  # a copy could still be accepted: its id is remembered
                    assert ids == {f"e{j}": ts}
                if ts < f - lateness - HOUR - lag:
                    assert not ids
    assert deleted == n - len(part.users) > n // 10  # 40 days of users, ~32 kept
    # the table's content is the in-memory state (the sweeps' changes were written)
    assert {k: decode_user(v).__getstate__() for k, v in table.items()} == {
        k: u.__getstate__() for k, u in part.users.items()
    }
    # at most ~32 days + a sweep's lag of users out of 40 days of them
    assert most <= (32 * DAY + 2 * lag) // (step_ms * MS) + per_batch
    assert part.meta.swept is not None and part.meta.swept <= part.engine.fold


def test_a_sweep_cut_short_by_a_crash_is_completed_on_redelivery() -> None:
    cfg = Config()
    old = _record(0, "old", "e0", START)
    # message 0: "old"'s page view; message 1: another user 40 days later, F crosses a sweep
    # point and "old" has nothing left
    later = _record(1, "new", "e1", START + 40 * 86_400_000)
    part = LiveUserPartition(cfg, 0, 1, 1)
    # the worker's clock holds F back 3 days (fold_limit: a record timestamp ahead of it)
    part.engine.fold_limit = (START + 37 * 86_400_000) * MS
    table: dict[str, bytes] = {}
    _write(table, part, part.apply(Batch("product-events", 0, [old]), 0))
    meta_0 = encode_meta(part.meta)
    out = part.apply(Batch("product-events", 0, [later]), 1)
    assert out.deleted == {"old"} and part.meta.swept_at == 1
    # the crash: message 1's meta is durable, none of its entity writes
    crashed = dict(table)
    meta_1 = encode_meta(part.meta)
    reloaded = LiveUserPartition(
        cfg,
        0,
        1,
        1,
        users={k: decode_user(v) for k, v in crashed.items()},
        meta=decode_meta(meta_1),
    )
    assert "old" in reloaded.users
    # redelivery of message 1: "new" is applied again (its write was lost), the sweep runs again
    out = reloaded.apply(Batch("product-events", 0, [later]), 1)
    _write(crashed, reloaded, out)
    assert out.deleted == {"old"}
    assert set(crashed) == {"new"} and reloaded.meta.accepted == 2
    # a message before it, redelivered too (from an older commit) after a restart whose F is
    # later (no clock holding it back now), decides no new sweep: its decision was made
    again = LiveUserPartition(cfg, 0, 1, 1, users={}, meta=decode_meta(meta_1))
    assert sweep_point(again.engine.fold) > again.meta.swept
    assert not again.apply(Batch("product-events", 0, [old]), 0).swept
    # a meta without the sweep fields (written before live expiry existed) reads as "never"
    legacy = decode_meta(meta_0)
    for name in ("swept", "swept_at", "msg_offset"):
        object.__delattr__(legacy, name)
    assert isinstance(legacy, Meta)
    fresh = LiveUserPartition(cfg, 0, 1, 1, users={}, meta=legacy)
    assert fresh.apply(Batch("product-events", 0, [later]), 1).swept


def test_a_slow_source_holds_expiry_back_an_idle_one_does_not() -> None:
    cfg = Config()
    day = 86_400_000
    part = LiveUserPartition(cfg, 0, 1, 1)
    part.wall = 0.0
    # source 1 (say, the forwards of another partition) sends a's event at day 0; source 0 runs
    # 10 days ahead
    part.apply(Batch("product-events", 1, [_record(0, "a", "e0", START)]), 0)
    part.apply(Batch("product-events", 0, [_record(0, "b", "e1", START + 10 * day)]), 1)
    assert part.engine.fold > (START + 9 * day) * MS  # F follows the fast source ...
    assert part.sweep_fold() <= START * MS  # ... expiry the slow one
    assert part.users["a"].ids == {"e0": START * MS}
    # a copy of e0 from the slow source, one day later (inside the allowed lateness): a duplicate
    part.wall = 30.0
    part.apply(Batch("product-events", 1, [_record(1, "a", "e0", START + day)]), 2)
    assert (part.meta.accepted, part.meta.duplicates) == (2, 1)
    # the slow source falls silent: after IDLE_SOURCE_SECONDS it holds nothing back
    part.wall = 30.0 + IDLE_SOURCE_SECONDS + 1
    out = part.apply(Batch("product-events", 0, [_record(1, "b", "e2", START + 11 * day)]), 3)
    assert out.swept and part.sweep_fold() == part.engine.fold
    assert "e0" not in part.users["a"].ids
