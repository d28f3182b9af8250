"""The partial at T computed in the compiled core (`LiveUsers.partial` / `LiveAccounts.partial`,
native/src/partial.rs) against the Python engine (`UserPartition.partial` /
`AccountPartition.partial`), its reference.

Random micro-batches of the simulate mix (bad records, duplicates, redeliveries, over-precise
timestamps, hostile records, zones with DST, fold limits, expiry sweeps, restarts through the
codec) go through the Python live partitions; at several points of the run, the compiled twins
are loaded with the Python side's state and both compute their partials at many T: before,
at and after the data, on local day boundaries, on the edges of every window (an instant of
the state plus 1h, 24h, 7d, 14d, 30d, 90d, give or take a nanosecond or an attosecond), far
after, and as Fractions (held by the core, or not: then the core falls back to the Python
engine on the exported state). Compared exactly, types included:
- the native partial with the Python engine's on the same state (`comparable_wire`, the lists
  and dicts whose order depends on the order users are visited in sorted: no consumer reads
  that order: `finalize` and agents/metrics.py sort them or sum them with `math.fsum`);
- the native partial with the Python engine's on the exported state (`to_python()`, the former
  path), in order too: the core visits users, sessions, tickets... as its export lists them;
- the snapshots (`finalize`) of every partition's merged partials.
A failing input is shrunk (tests/unit/native_cases.py `minimize`) and printed.
"""

from __future__ import annotations

import random
from collections import deque
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from streams import codec
from streams.config import Config
from streams.engine import Partial, finalize
from streams.live import AccountMeta, Batch, LiveAccountPartition, LiveUserPartition
from streams.state import AccountState, UserState
from streams.timeutil import DAY, HOUR, MS, NS, Instant
from tests.unit.native_cases import exact_differences, minimize
from tests.unit.test_native_live import (
    START_MS,
    Mismatch,
    Rec,
    _native,
    comparable_wire,
    micro_batches,
    partial_of,
    sim_records,
)

WINDOWS = (HOUR, 24 * HOUR, 7 * DAY, 14 * DAY, 14 * DAY + HOUR, 15 * DAY, 30 * DAY, 90 * DAY)
ATTO = Fraction(1, 10**9)
FRACTIONS = [0]  # Fraction durations seen in the native partials
YEARS_1_9999 = (-62_135_596_800 * NS, 253_402_300_800 * NS)


def python_run(
    recs: list[Rec], cfg: Config, n: int, seed: int, checkpoints: int
) -> list[tuple[list[LiveUserPartition], list[LiveAccountPartition]]]:
    """The records through the Python live partitions (fold limits, idle sources, restarts
    through the codec); the partitions' durable state (encoded) at `checkpoints` points and at
    the end, each as fresh partitions."""
    rng = random.Random(seed)
    py_u = [LiveUserPartition(cfg, p, n, n) for p in range(n)]
    py_a = [LiveAccountPartition(cfg, p) for p in range(n)]
    queues: dict[int, deque[Batch]] = {p: deque() for p in range(n)}
    batches = micro_batches(recs, rng, 40)
    for b in batches:
        queues[b.partition % n].append(b)
    facts_q: dict[int, deque[Any]] = {p: deque() for p in range(n)}
    msg = [0] * n
    amsg = [0] * n
    wall = 0.0
    margin = py_u[0].engine.margin
    every = max(1, len(batches) // max(1, checkpoints))
    steps = 0
    out = []

    def durable() -> tuple[list[Any], list[Any]]:
        return (
            [
                ({k: codec.encode_user(v) for k, v in u.users.items()}, codec.encode_meta(u.meta))
                for u in py_u
            ],
            [
                (
                    {k: codec.encode_account(v) for k, v in a.accounts.items()},
                    codec.encode_account_meta(a.meta),
                )
                for a in py_a
            ],
        )

    def restore(us: list[Any], accts: list[Any]) -> Any:
        return (
            [
                LiveUserPartition(
                    cfg,
                    p,
                    n,
                    n,
                    {k: codec.decode_user(v) for k, v in users.items()},
                    codec.decode_meta(meta),
                )
                for p, (users, meta) in enumerate(us)
            ],
            [
                LiveAccountPartition(
                    cfg,
                    p,
                    {k: codec.decode_account(v) for k, v in accounts.items()},
                    codec.decode_account_meta(meta),
                )
                for p, (accounts, meta) in enumerate(accts)
            ],
        )

    while any(queues.values()) or any(facts_q.values()):
        p = rng.choice([q for q in range(n) if queues[q] or facts_q[q]])
        if queues[p] and (not facts_q[p] or rng.random() < 0.7):
            b = queues[p].popleft()
            steps += 1
            if rng.random() < 0.25:
                newest = max(x[1] for x in b.records) * MS
                limit = newest + rng.choice([-3 * DAY, -HOUR, 0, DAY]) - margin
                py_u[p].engine.fold_limit = py_a[p].engine.fold_limit = limit
            r = rng.random()
            if r < 0.1:
                wall += 3600.0
            elif r < 0.7:
                wall += rng.random() * 60
            py_u[p].wall = None if wall < 1 else wall
            o = py_u[p].apply(b, msg[p])
            msg[p] += 1
            for q, bs in o.forwards.items():
                queues[q].extend(bs)
            for q, fs in o.facts.items():
                facts_q[q].append(fs)
            if steps % every == 0:
                out.append(restore(*durable()))
        else:
            py_a[p].apply(facts_q[p].popleft(), amsg[p])
            amsg[p] += 1
        if rng.random() < 0.03:  # a restart from the durable state
            us, accts = durable()
            new_u, new_a = restore(us, accts)
            q = rng.randrange(n)
            py_u[q], py_a[q] = new_u[q], new_a[q]
    out.append(restore(*durable()))
    return out


def native_twins(
    cfg: Config, py_u: list[LiveUserPartition], py_a: list[LiveAccountPartition]
) -> tuple[list[Any], list[Any]]:
    nl = _native()
    n = len(py_u)
    na_u = [
        nl.NativeLiveUserPartition(
            cfg,
            p,
            n,
            n,
            {k: codec.decode_user(codec.encode_user(v)) for k, v in u.users.items()},
            codec.decode_meta(codec.encode_meta(u.meta)),
        )
        for p, u in enumerate(py_u)
    ]
    na_a = [
        nl.NativeLiveAccountPartition(
            cfg,
            p,
            {k: codec.decode_account(codec.encode_account(v)) for k, v in a.accounts.items()},
            codec.decode_account_meta(codec.encode_account_meta(a.meta)),
        )
        for p, a in enumerate(py_a)
    ]
    for x in na_u + na_a:
        assert not x.handed_over
    return na_u, na_a


def state_instants(py_u: list[LiveUserPartition], py_a: list[LiveAccountPartition]) -> list[Any]:
    """Instants held in the states (activity, signups, milestones, sessions, tickets, answers,
    facts, orders)."""
    out: list[Any] = []
    for part in py_u:
        for u in part.users.values():
            out += list((u.days or {}).values()) + list(u.lastp or [])
            out += [x for x in (u.last, u.signup) if x is not None]
            out += [v for v in (u.ms or {}).values() if type(v) is not list]
            for st in (u.sessions or {}).values():
                out += [x for x in st if x is not None]
            for tk in (u.tickets or {}).values():
                out += [x for x in tk if x is not None]
            out += [a[0] for a in u.answers or []] + [f[0] for f in u.facts or []]
            out += list((u.returns or {}).values())
    for pa in py_a:
        for a in pa.accounts.values():
            out += [a.first] + [o[0] for o in a.orders or []] + list(a.lastp or [])
            out += [x[0] for x in (a.nps, a.csat, a.sub) if x is not None]
    return out


def day_boundaries(tz: str, first: Instant, last: Instant) -> list[int]:
    """Local midnights (ns) from two days before `first` to 32 days after `last`."""
    zone = ZoneInfo(tz)
    d = datetime.fromtimestamp(int(first // NS), zone).date() - timedelta(days=2)
    end = datetime.fromtimestamp(int(last // NS), zone).date() + timedelta(days=32)
    out = []
    while d <= end:
        midnight = datetime(d.year, d.month, d.day, tzinfo=zone)
        out.append(int(midnight.timestamp()) * NS)
        d += timedelta(days=1)
    return out


def as_ofs(rng: random.Random, tz: str, recs: list[Rec], instants: list[Any]) -> list[Any]:
    sim = [r[3] for r in recs if START_MS <= r[3] <= START_MS + 100 * 86_400_000]  # not hostile
    first = min(sim, default=START_MS) * MS
    last = max(sim, default=START_MS) * MS
    ts: list[Any] = [min(r[3] for r in recs) * MS, max(r[3] for r in recs) * MS] if recs else []
    ts += [first - DAY, first - 1, first, last, last + 1, last - 3 * HOUR]
    ts += [last - 2 * DAY + 17, last + 14 * DAY, last + 20 * DAY, last + 31 * DAY]
    ts += [last + 400 * DAY, last + 5 * 365 * DAY, -62_135_596_800 * NS]  # 0001-01-01
    ts += [253_402_300_799 * NS]  # 9999-12-31T23:59:59
    bounds = day_boundaries(tz, first, last)
    for b in rng.sample(bounds, min(8, len(bounds))):
        ts += [b, b - 1, b + 1, Fraction(b) - ATTO]
    for x in rng.sample(instants, min(30, len(instants))):
        w = rng.choice(WINDOWS)
        ts += [x, x + w, x + w + rng.choice([-1, 1, ATTO, -ATTO])]
    ts += [Fraction(last), last + Fraction(7, 1000), last + Fraction(1, 3)]  # (1/3 ns: Python's)
    ts += [10**25, -(10**30)]  # outside years 1-9999: Python's
    return ts


def totals(parts: list[Any], t: Any) -> Partial:
    total = Partial()
    for part in parts:
        total.merge(part.engine.partial(t))
    return total


def check(what: str, py: Any, nat: Any) -> None:
    diffs = exact_differences(py, nat)
    if diffs:
        raise Mismatch(f"{what}:\n  " + "\n  ".join(diffs[:8]))


def compare_at(cfg: Config, py_u: list[Any], py_a: list[Any], ts: list[Any]) -> int:
    """Every T of `ts` on both engines; raises Mismatch. Returns how many T the core held."""
    na_u, na_a = native_twins(cfg, py_u, py_a)
    held = 0
    for t in ts:
        for p in range(len(py_u)):
            for kind, a, b in (("user", py_u[p], na_u[p]), ("account", py_a[p], na_a[p])):
                nat = b.engine.partial(t)
                durs = list(nat.ttfv) + nat.session_durs + nat.resolution_durs
                FRACTIONS[0] += sum(isinstance(x, Fraction) for x in durs)
                check(
                    f"{kind} partition {p}: partial at {t!r}",
                    partial_of(a.engine.partial(t)),
                    partial_of(nat),
                )
                # in order: the core's scan (a user partition's answer at a "now" may come from
                # its sums kept current, whose dicts list their keys in another order)
                scanned = nat
                if kind == "user" and type(t) in (int, Fraction):
                    d = b._core.partial(t, scan=True)
                    scanned = nat if d is None else _native()._user_partial(d)
                check(
                    f"{kind} partition {p}: partial at {t!r} (the exported state, in order)",
                    comparable_wire(b.engine.to_python().partial(t)),
                    comparable_wire(scanned),
                )
        held += b._core.partial(t) is not None if type(t) in (int, Fraction) else 0
        if (isinstance(t, Fraction) and 10**9 % t.denominator) or not YEARS_1_9999[
            0
        ] <= t < YEARS_1_9999[1]:
            continue  # format_instant: decimal instants of years 1-9999 only
        check(
            f"snapshot at {t!r}",
            finalize(totals(py_u + py_a, t), t, cfg),
            finalize(totals(na_u + na_a, t), t, cfg),
        )
    return held


def run_and_compare(
    recs: list[Rec], cfg: Config, n: int, seed: int, checkpoints: int, tz: str
) -> dict[str, int]:
    rng = random.Random(seed)
    FRACTIONS[0] = 0
    seen = {"checkpoints": 0, "held": 0, "as_ofs": 0, "fractions": 0, "ttfv": 0, "sessions": 0}
    seen.update(health=0, answers=0)
    for py_u, py_a in python_run(recs, cfg, n, seed, checkpoints):
        ts = as_ofs(rng, tz, recs, state_instants(py_u, py_a))
        seen["held"] += compare_at(cfg, py_u, py_a, ts)
        seen["checkpoints"] += 1
        seen["as_ofs"] += len(ts)
        last = max((r[3] for r in recs if r[3] <= START_MS + 100 * 86_400_000), default=START_MS)
        for t in (last * MS, last * MS - DAY):
            p = totals(py_u + py_a, t)
            seen["ttfv"] += len(p.ttfv)
            seen["sessions"] += p.sessions
            seen["health"] += len(p.health)
            seen["answers"] += p.surveys.nps_n[1] + p.surveys.csat_n[2]
    seen["fractions"] = FRACTIONS[0]
    return seen


def assert_same(
    recs: list[Rec], cfg: Config, n: int, seed: int, checkpoints: int, tz: str
) -> dict[str, int]:
    try:
        return run_and_compare(recs, cfg, n, seed, checkpoints, tz)
    except Mismatch as exc:
        first = str(exc)

    def fails(rs: list[Any]) -> bool:
        try:
            run_and_compare(rs, cfg, n, seed, 1, tz)
        except Mismatch:
            return True
        except Exception:  # another failure: not the one being shrunk
            return False
        return False

    small = minimize(list(recs), fails, budget_s=30)
    try:
        run_and_compare(small, cfg, n, seed, 1, tz)
        again = "(the shrunk input passes?)"
    except Exception as exc:
        again = str(exc)
    lines = "\n".join(repr(r) for r in small[:40])
    pytest.fail(f"{first}\n\nshrunk to {len(small)} records:\n{lines}\n\nwhich gives:\n{again}")


@pytest.mark.parametrize(
    ("seed", "timezone", "partitions", "n", "days"),
    [
        (11, "UTC", 2, 2500, 12),
        (12, "America/New_York", 3, 2500, 40),  # DST change on 2026-11-01, expiry
        (13, "Asia/Kolkata", 1, 1500, 5),
        (14, "Australia/Lord_Howe", 2, 1200, 0.5),  # a 30-minute DST offset; dense
    ],
)
def test_partials_computed_in_the_core_equal_pythons(
    seed: int, timezone: str, partitions: int, n: int, days: float
) -> None:
    _native()
    cfg = Config.from_mapping({"timezone": timezone})
    recs = sim_records(
        seed, n, users=60, days=days, partitions=partitions, over_precise=0.2, hostile=n // 20
    )
    seen = assert_same(recs, cfg, partitions, seed, 3, timezone)
    assert seen["checkpoints"] >= 3 and seen["held"] > 0.7 * seen["as_ofs"]
    assert seen["ttfv"] > 0 and seen["sessions"] > 0 and seen["health"] > 0
    assert seen["answers"] > 0
    if days >= 5:
        assert seen["fractions"] > 0


def _account(first: Instant, **slots: Any) -> AccountState:
    a = AccountState(first)
    for k, v in slots.items():
        setattr(a, k, v)
    return a


def test_health_near_40_is_decided_exactly() -> None:
    """Customers whose health is within 1e-6 of 40 (decided with fractions), on both sides of
    it, with int and Fraction instants and T: the same health floats and at-risk counts."""
    nl = _native()
    cfg = Config()
    t = START_MS * MS + 40 * DAY
    # 100 * (0.4 * r + 0.3 * 1/20 + 0.3 * 1/2) = 40  <=>  r = 0.5875: t - last = 0.4125 * 30d
    gap = Fraction(4125, 10000) * 30 * DAY
    accounts: dict[str, AccountState] = {}
    for i, delta in enumerate([0, 1, -1, ATTO, -ATTO, 10**6, -(10**6), Fraction(1, 2)]):
        last = t - gap + delta
        last = int(last) if last.denominator == 1 else last
        day = int(last // DAY)
        accounts[f"c{i}"] = _account(last, days={day: last}, last=last)
    # with an answer: nps 8 -> sentiment 0.8; 40 = 40 r + 1.5 + 24 -> r = 0.3625
    gap2 = Fraction(6375, 10000) * 30 * DAY
    for i, delta in enumerate([0, 1, -1]):
        last = int(t - gap2) + delta
        day = int(last // DAY)
        accounts[f"n{i}"] = _account(last, days={day: last}, last=last, nps=(last, -8))
    py = LiveAccountPartition(cfg, 0, accounts=dict(accounts), meta=AccountMeta())
    na = nl.NativeLiveAccountPartition(cfg, 0, dict(accounts), AccountMeta())
    near = 0
    for tt in (t, Fraction(t), t + 1, t - 1):
        a, b = py.engine.partial(tt), na.engine.partial(tt)
        check(f"partial at {tt!r}", partial_of(a), partial_of(b))
        near += sum(abs(h - 40) < 1e-6 for h in a.health)
    assert near > 10
    # both answers of the exact test occur
    p = py.engine.partial(t)
    assert 0 < p.at_risk < len(accounts)


def test_a_t_the_core_cannot_hold_falls_back_to_python() -> None:
    nl = _native()
    cfg = Config()
    u = UserState()
    u.signup = START_MS * MS
    u.days = {int(u.signup // DAY): u.signup}
    u.last = u.signup
    part = nl.NativeLiveUserPartition(cfg, 0, 1, 1, {"u": u})
    assert part._core.partial(Fraction(1, 3)) is None  # finer than attoseconds
    assert part._core.partial(10**25) is None  # after year 9999
    assert part._core.partial(START_MS * MS) is not None
    ref = LiveUserPartition(cfg, 0, 1, 1, {"u": u})
    for t in (START_MS * MS + Fraction(1, 3), 10**25, START_MS * MS):
        check(
            f"at {t}",
            comparable_wire(ref.engine.partial(t)),
            comparable_wire(part.engine.partial(t)),
        )
