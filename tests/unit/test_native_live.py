"""The compiled live partitions (`streams.native_live`, native/src/live.rs) against the Python
ones (`streams.live`), their reference.

- The crash simulation of tests/unit/test_live.py runs on both (its `parts` fixture).
- Random micro-batches of the simulate mix (bad records, misrouted keys, duplicates,
  redeliveries, restarts from the Python side's state, over-precise timestamps, hostile
  records, a zone with DST, fold limits and idle sources, expiry sweeps forced) go through `LiveUserPartition.apply` and
  `NativeLiveUserPartition.apply` side by side, and their facts through both account
  partitions: every Output field equal (list order included), the metas equal (every slot), the
  exported states equal to the Python states (every slot, types included), the partials equal
  at several as-of instants, the dormant signals equal. A failing input is shrunk (greedy delta
  debugging over its records, as tests/unit/native_cases.py does) and printed.
- The cases of tests/unit/test_live_expiry.py run on the native twin.
- murmur2 / kafka_partition against streams.partitioner.
- The event ids each apply adds and drops (`take_id_writes` against the Python side's
  `take_id_changes`, encoded) are equal, and the restarts load both sides from the stored form
  the worker writes (users without ids, each id under its own key: agents/users.py
  `load_user_partition`).

The compiled module must be importable in CI (CI=1): there the tests fail without it; elsewhere
they are skipped with the reason.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import deque
from fractions import Fraction
from typing import Any

import pytest

from agents.epoch import Stored
from agents.users import kept_ts, load_user_partition
from streams import codec
from streams.config import Config
from streams.engine import partial_to_json
from streams.live import (
    IDLE_SOURCE_SECONDS,
    AccountMeta,
    Batch,
    Fact,
    LiveAccountPartition,
    LiveUserPartition,
    Output,
)
from streams.partitioner import kafka_partition, murmur2
from streams.simulate import SimConfig, Simulator
from streams.state import (
    _ACCOUNT_SLOTS,
    _USER_SLOTS,
    K_CSAT,
    K_NONE,
    K_NPS,
    K_ORDER,
    K_SUB_CANCEL,
    K_SUB_START,
)
from streams.timeutil import DAY, HOUR, MS, format_instant
from tests.unit import test_live_expiry as tle
from tests.unit.native_cases import exact_differences, minimize
from tests.unit.test_live import NATIVE_MISSING

# (topic, partition, offset, record ts ms, key, value)
Rec = tuple[str, int, int, int, "bytes | None", "bytes | None"]

START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
PE, SA = "product-events", "survey-answers"


def _native() -> Any:
    from streams import native_live

    if not native_live.available():
        if os.environ.get("CI"):
            pytest.fail(NATIVE_MISSING + " (CI: the tests must run)")
        pytest.skip(NATIVE_MISSING)
    return native_live


# ---- inputs --------------------------------------------------------------------------------


def _over_precise(value: bytes, rng: random.Random, digits: int) -> bytes:
    """The record with its ts as an RFC 3339 string of `digits` fractional digits."""
    try:
        d = json.loads(value)
    except ValueError:
        return value
    if not isinstance(d, dict) or type(d.get("ts")) is not int:
        return value
    base = format_instant(d["ts"] * MS)[:19]  # YYYY-MM-DDTHH:MM:SS
    frac = "".join(rng.choice("0123456789") for _ in range(digits))
    d["ts"] = f"{base}.{frac}{rng.choice(['Z', '+00:00', '-05:30'])}"
    return json.dumps(d).encode()


def sim_records(
    seed: int,
    n: int,
    users: int,
    days: float,
    partitions: int,
    over_precise: float = 0.03,
    max_digits: int = 18,
    hostile: int = 0,
) -> list[Rec]:
    """The simulate mix as live records, with over-precise timestamps (10..max_digits
    fractional digits) and tests/hostile.py records mixed in; offsets renumbered per source."""
    duration_s = days * 86400
    sim = SimConfig(
        start_ms=START_MS,
        duration_s=duration_s,
        users=users,
        rate=n / duration_s,
        seed=seed,
        partitions=partitions,
        bad_fraction=0.06,
        misrouted_fraction=0.1,
        max_records=n,
    )
    rng = random.Random(seed)
    out: list[tuple[str, int, int, bytes | None, bytes | None]] = []
    for e in Simulator(sim):
        value = None if e["payload"] is None else e["payload"].encode("utf-8", "surrogatepass")
        if value is not None and rng.random() < over_precise:
            value = _over_precise(value, rng, rng.randint(10, max_digits))
        key = None if e["key"] is None else e["key"].encode("utf-8", "surrogatepass")
        out.append((e["topic"], e["partition"], e["ts"], key, value))
    if hostile:
        from tests.hostile import Hostile

        gen = Hostile(seed=seed, live=True, users=users)
        shift = START_MS + int(duration_s * 1000) // 2 - gen.rts
        at = sorted(rng.randrange(len(out) + 1) for _ in range(hostile))
        for k, rec in enumerate(gen.records(hostile)):
            key = None if rec.key is None else rec.key.encode("utf-8", "surrogatepass")
            rts = rec.rts + shift if 0 < rec.rts + shift < 2**62 else rec.rts
            out.insert(at[k] + k, (rec.topic, rng.randrange(partitions), rts, key, rec.value))
    counters: dict[tuple[str, int], int] = {}
    recs: list[Rec] = []
    for topic, part, rts, key, value in out:
        off = counters.get((topic, part), -1) + 1
        counters[(topic, part)] = off
        recs.append((topic, part, off, rts, key, value))
    return recs


def micro_batches(recs: list[Rec], rng: random.Random, most: int) -> list[Batch]:
    """The records of each source in offset order, cut into micro-batches of 1..most."""
    per: dict[tuple[str, int], list[tuple[int, int, bytes | None, bytes | None]]] = {}
    for topic, part, off, rts, key, value in recs:
        per.setdefault((topic, part), []).append((off, rts, key, value))
    out = []
    for (topic, part), rs in per.items():
        i = 0
        while i < len(rs):
            k = rng.randint(1, most)
            out.append(Batch(topic, part, rs[i : i + k]))
            i += k
    rng.shuffle(out)  # sources interleave; each source stays in order (stable below)
    order: dict[tuple[str, int], list[Batch]] = {}
    for b in out:
        order.setdefault((b.topic, b.partition), []).append(b)
    for bs in order.values():
        bs.sort(key=lambda b: b.records[0][0])
    it = {k: iter(v) for k, v in order.items()}
    return [next(it[(b.topic, b.partition)]) for b in out]


# ---- comparison ----------------------------------------------------------------------------


class Mismatch(AssertionError):
    pass


def norm(v: Any) -> Any:
    """A value for comparing regardless of dict order, types kept."""
    t = type(v).__name__
    if isinstance(v, dict):
        return (t, sorted((norm(k), norm(x)) for k, x in v.items()))
    if isinstance(v, set):
        return (t, sorted(norm(x) for x in v))
    if isinstance(v, list | tuple):
        return (t, [norm(x) for x in v])
    return (t, v)


def state_of(s: Any, slots: tuple[str, ...]) -> Any:
    return norm({name: getattr(s, name) for name in slots})


def meta_of(m: Any) -> Any:
    return norm({name: getattr(m, name, "<unset>") for name in type(m).__slots__})


def output_of(o: Output) -> list[Any]:
    fw = {q: [(b.topic, b.partition, b.records) for b in bs] for q, bs in o.forwards.items()}
    return [
        o.dead_letters,
        fw,
        o.facts,
        o.signals,
        sorted(o.dirty),
        sorted(o.deleted),
        o.swept,
        o.applied,
        o.skipped,
    ]


_FIELDS = ("dead_letters", "forwards", "facts", "signals", "dirty", "deleted", "swept")
_FIELDS += ("applied", "skipped")
_UNORDERED = ("ttfv", "session_durs", "resolution_durs", "revenue_90", "revenue_30", "health")


def comparable_wire(p: Any) -> dict[str, Any]:
    """`partial_to_json(p)`, with each Distribution's runs joined in order, and the health
    scores' sum terms replaced by the float they sum to (`health_fsum`): the Python engine's
    terms are the scores themselves, the core's the partials of Shewchuk's algorithm, and what
    must agree is the `math.fsum` each gives."""
    d = partial_to_json(p)
    d["ttfv"] = [x for run in d["ttfv"]["runs"] for x in run]
    d["health_fsum"] = math.fsum(x for terms in d["health"]["terms"] for x in terms)
    d["health"] = [x for run in d["health"]["runs"] for x in run]
    return d


def _sorted_dicts(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _sorted_dicts(v[k]) for k in sorted(v)}
    return v


def partial_of(p: Any) -> dict[str, Any]:
    """A partial as JSON, in an order that does not depend on the order users are visited in
    (it differs: lists of values and dicts are appended to in that order)."""
    d = comparable_wire(p)
    for k in _UNORDERED:
        d[k] = sorted(d[k], key=lambda x: Fraction(x) if isinstance(x, str) else x)
    return _sorted_dicts(d)


def check(what: str, py: Any, nat: Any) -> None:
    diffs = exact_differences(py, nat)
    if diffs:
        raise Mismatch(f"{what}:\n  " + "\n  ".join(diffs[:8]))


# ---- the side-by-side run ----------------------------------------------------------------------


def run_side_by_side(
    recs: list[Rec], cfg: Config, partitions: int, seed: int, most: int = 40, encoded: bool = False
) -> dict[str, int]:
    """Every user and account partition in both implementations, fed the same messages (the
    forwards and facts of the Python side go to both); raises Mismatch at the first
    difference. Returns counts of what was exercised. `encoded`: the native side gets each
    message as its bytes (`apply_encoded`, as the worker's stages do; decoded and `apply`'d
    when it says None), its facts as their messages, which must be `encode_facts`' bytes."""
    nl = _native()
    rng = random.Random(seed)
    n = partitions
    py_u = [LiveUserPartition(cfg, p, n, n) for p in range(n)]
    na_u = [nl.NativeLiveUserPartition(cfg, p, n, n) for p in range(n)]
    py_a = [LiveAccountPartition(cfg, p) for p in range(n)]
    na_a = [nl.NativeLiveAccountPartition(cfg, p) for p in range(n)]
    queues: dict[int, deque[Batch]] = {p: deque() for p in range(n)}
    for b in micro_batches(recs, rng, most):
        queues[b.partition % n].append(b)
    facts_q: dict[int, deque[Any]] = {p: deque() for p in range(n)}
    msg = [0] * n
    amsg = [0] * n
    wall = 0.0
    seen = {"batches": 0, "sweeps": 0, "forwards": 0, "dead": 0, "signals": 0, "deleted": 0}
    seen.update(redelivered=0, skipped=0, facts=0, handed_over=0, restarts=0, ids=0, ids_dropped=0)
    seen.update(encoded_batches=0, encoded_facts=0)
    margin = py_u[0].engine.margin
    steps = 0
    seen.update(asked=0, aggregate_answers=0)
    now = [0] * n  # each user partition's "now" asked lately (it moves forward)

    def ask_now(p: int, b: Batch) -> None:
        """The partial at a "now" after the last one: the core answers from the sums it keeps
        current (native/src/aggregate.rs), which must equal the Python engine's partial and
        the core's own scan of every user."""
        newest = max(x[1] for x in b.records) * MS
        step = rng.choice([-3 * HOUR, -HOUR, 0, 0, 1, 59 * HOUR // 60, 13 * HOUR, 2 * DAY])
        now[p] = max(now[p], newest + step)
        # sometimes time passes with no record: users' windows close (no change tells the core)
        for _ in range(rng.choice([0, 0, 0, 8])):
            ask_at(p, now[p])
            now[p] += rng.choice([1, HOUR // 60, HOUR, 5 * HOUR, HOUR // 7 + 3])
        ask_at(p, now[p])

    def ask_at(p: int, t: int) -> None:
        core = na_u[p]._core
        before = core.aggregate_answers
        got = partial_of(na_u[p].engine.partial(t))
        seen["asked"] += 1
        seen["aggregate_answers"] += core.aggregate_answers - before
        check(f"user partition {p}: partial at now {t}", partial_of(py_u[p].engine.partial(t)), got)
        scanned = core.partial(t, scan=True)
        if scanned is not None:
            check(
                f"user partition {p}: scan at now {t}", partial_of(nl._user_partial(scanned)), got
            )

    seen.update(account_asks=0, rows_reused=0, popped=0)
    anow = [0] * n  # each account partition's "now" asked lately

    def ask_accounts(p: int, fs: Any) -> None:
        """The account partition's partial at a "now" that mostly moves forward, a few times
        with no fact between (the core answers from the rows it keeps between asks, which must
        equal the Python engine's partial and the core's scan of every customer)."""
        newest = max((f[1] for f in fs), default=anow[p])
        step = rng.choice([-2 * DAY, -HOUR, 0, 0, 1, 59 * HOUR // 60, 13 * HOUR, 2 * DAY])
        anow[p] = max(anow[p], newest + step) if rng.random() < 0.9 else newest + step
        core = na_a[p]._core
        for _ in range(rng.choice([1, 1, 2, 6])):
            t = anow[p]
            before = core.rows_reused
            got = partial_of(na_a[p].engine.partial(t))
            seen["account_asks"] += 1
            seen["rows_reused"] += core.rows_reused - before
            check(
                f"account partition {p}: partial at {t}", partial_of(py_a[p].engine.partial(t)), got
            )
            scanned = core.partial(t, scan=True)
            if scanned is not None:
                check(
                    f"account partition {p}: scan at {t}",
                    partial_of(nl._account_partial(scanned)),
                    got,
                )
            anow[p] += rng.choice([1, HOUR // 60, HOUR, 5 * HOUR, 3 * DAY, 31 * DAY])

    history: dict[int, list[tuple[Batch, int]]] = {p: [] for p in range(n)}

    # each user partition's stored event ids ({id_key: value}), kept from the id writes
    id_store: dict[int, dict[bytes, bytes]] = {p: {} for p in range(n)}

    def id_step(p: int, what: str) -> None:
        w1 = codec.encode_id_changes(py_u[p].take_id_changes())
        w2 = na_u[p].take_id_writes()
        # puts in the order of the records; the drops (a sweep's, a load's) in any order
        check(f"{what}: ids added", [w for w in w1 if w[1]], [w for w in w2 if w[1]])
        check(
            f"{what}: ids dropped",
            sorted(w for w in w1 if not w[1]),
            sorted(w for w in w2 if not w[1]),
        )
        for k, v in w1:
            if v is None:
                id_store[p].pop(k, None)
            else:
                id_store[p][k] = v
        seen["ids"] += len(w1)
        seen["ids_dropped"] += sum(1 for w in w1 if w[1] is None)

    def native_apply(p: int, b: Batch, off: int, o1: Output) -> Output:
        if not encoded:
            return na_u[p].apply(b, off)
        data = codec.encode_batch(b)
        got = na_u[p].apply_encoded(data, off)
        if got is None:  # as agents/users.py does
            return na_u[p].apply(codec.decode_batch(data), off)
        seen["encoded_batches"] += 1
        head = (got.topic, got.partition, got.records, list(got.kept_ts))
        check(
            f"partition {p} message {off}: what apply_encoded read",
            (b.topic, b.partition, len(b.records), kept_ts(b, o1)),
            head,
        )
        o2 = got.out
        check(f"partition {p} message {off}: facts as lists", {}, o2.facts)
        want = {q: codec.encode_facts(fs) for q, fs in o1.facts.items()}
        check(f"partition {p} message {off}: the facts' messages", want, o2.facts_encoded)
        o2.facts = {q: codec.decode_facts_message(m) for q, m in o2.facts_encoded.items()}
        return o2

    def user_step(p: int, b: Batch, off: int) -> Output:
        o1 = py_u[p].apply(b, off)
        o2 = native_apply(p, b, off, o1)
        for name, x, y in zip(_FIELDS, output_of(o1), output_of(o2), strict=True):
            check(f"partition {p} message {off}: Output.{name}", x, y)
        check(f"partition {p} message {off}: meta", meta_of(py_u[p].meta), meta_of(na_u[p].meta))
        id_step(p, f"partition {p} message {off}")
        return o1

    while any(queues.values()) or any(facts_q.values()):
        steps += 1
        p = rng.choice([q for q in range(n) if queues[q] or facts_q[q]])
        if queues[p] and (not facts_q[p] or rng.random() < 0.7):
            b = queues[p].popleft()
            off = msg[p]
            msg[p] += 1
            r = rng.random()
            if r < 0.25:  # the worker's clock holds F back, or lets it go
                newest = max(x[1] for x in b.records) * MS
                limit = newest + rng.choice([-3 * DAY, -HOUR, 0, DAY]) - margin
                py_u[p].engine.fold_limit = na_u[p].engine.fold_limit = limit
                py_a[p].engine.fold_limit = na_a[p].engine.fold_limit = limit
            elif r < 0.3:
                py_u[p].engine.fold_limit = na_u[p].engine.fold_limit = None
            r = rng.random()
            if r < 0.1:
                wall += IDLE_SOURCE_SECONDS + 1  # the other sources fall idle
            elif r < 0.7:
                wall += rng.random() * 60
            w = None if wall < 1 else wall
            py_u[p].wall = na_u[p].wall = w
            o = user_step(p, b, off)
            if rng.random() < 0.35 and not na_u[p].handed_over:
                ask_now(p, b)
            history[p].append((b, off))
            seen["batches"] += 1
            seen["sweeps"] += o.swept
            seen["dead"] += len(o.dead_letters)
            seen["signals"] += len(o.signals)
            seen["deleted"] += len(o.deleted)
            seen["skipped"] += o.skipped
            for q, bs in o.forwards.items():
                queues[q].extend(bs)
                seen["forwards"] += sum(len(x.records) for x in bs)
            for q, fs in o.facts.items():
                facts_q[q].append(fs)
            if rng.random() < 0.08 and history[p]:  # a redelivery (Faust, a restart)
                ob, oo = rng.choice(history[p][-5:])
                seen["skipped"] += user_step(p, ob, oo).skipped
                seen["redelivered"] += 1
        else:
            fs = facts_q[p].popleft()
            off = amsg[p]
            amsg[p] += 1
            d1 = py_a[p].apply(fs, off)
            d2 = na_a[p].apply_encoded(codec.encode_facts(fs), off) if encoded else None
            if d2 is None:
                d2 = na_a[p].apply(fs, off)
            else:
                seen["encoded_facts"] += 1
            check(f"account partition {p} message {off}: dirty", sorted(d1), sorted(d2))
            check(f"account partition {p}: meta", meta_of(py_a[p].meta), meta_of(na_a[p].meta))
            seen["facts"] += len(fs)
            if rng.random() < 0.04 and fs and not na_a[p].handed_over:  # a forgotten customer
                c = rng.choice(fs)[0]
                check(f"customer {c!r} popped", py_a[p].accounts.pop(c, None) is None,
                      na_a[p].accounts.pop(c, None) is None)  # fmt: skip
                seen["popped"] += 1
            if rng.random() < 0.35 and not na_a[p].handed_over:
                ask_accounts(p, fs)
        if rng.random() < 0.03:  # a restart: both reload the Python side's durable state
            q = rng.randrange(n)
            # (through the codec, as the worker stores them: users without ids, ids apart)
            stored = Stored(
                entities={k: codec.encode_stored_user(v) for k, v in py_u[q].users.items()},
                ids=sorted(id_store[q].items()),
                meta=codec.encode_meta(py_u[q].meta),
            )
            py_u[q], _ = load_user_partition(cfg, q, n, stored, None)
            na_u[q], _ = load_user_partition(cfg, q, n, stored, None, nl.NativeLiveUserPartition)
            id_step(q, f"partition {q} loaded")
            accounts = {k: codec.encode_account(v) for k, v in py_a[q].accounts.items()}
            ameta = codec.encode_account_meta(py_a[q].meta)

            def load_accounts(accounts: dict[str, bytes] = accounts) -> dict[str, Any]:
                return {k: codec.decode_account(v) for k, v in accounts.items()}

            py_a[q] = LiveAccountPartition(
                cfg, q, accounts=load_accounts(), meta=codec.decode_account_meta(ameta)
            )
            na_a[q] = nl.NativeLiveAccountPartition(
                cfg, q, load_accounts(), codec.decode_account_meta(ameta)
            )
            seen["restarts"] += 1
        if steps % 15 == 0:
            compare_states(py_u, na_u, py_a, na_a)
    compare_states(py_u, na_u, py_a, na_a)
    last = max((r[3] for r in recs), default=START_MS) * MS
    for t in (last, last - 3 * HOUR, last - 2 * DAY + 17, last + 20 * DAY):
        for p in range(n):
            check(
                f"user partition {p}: partial at {t}",
                partial_of(py_u[p].engine.partial(t)),
                partial_of(na_u[p].engine.partial(t)),
            )
            check(
                f"account partition {p}: partial at {t}",
                partial_of(py_a[p].engine.partial(t)),
                partial_of(na_a[p].engine.partial(t)),
            )
    for p in range(n):
        for until in (last - 20 * DAY, last - 20 * DAY, last, last + 15 * DAY, last + 40 * DAY):
            s1 = sorted(py_u[p].dormant_signals(until))
            s2 = sorted(na_u[p].dormant_signals(until))
            check(f"user partition {p}: dormant signals at {until}", s1, s2)
            check(f"user partition {p}: meta", meta_of(py_u[p].meta), meta_of(na_u[p].meta))
        check(f"user partition {p}: sweep_fold", py_u[p].sweep_fold(), na_u[p].sweep_fold())
        check(f"user partition {p}: sweeps", py_u[p].sweeps, na_u[p].sweeps)
        seen["handed_over"] += na_u[p].handed_over + na_a[p].handed_over
    return seen


def compare_states(py_u: list[Any], na_u: list[Any], py_a: list[Any], na_a: list[Any]) -> None:
    for p, (a, b) in enumerate(zip(py_u, na_u, strict=True)):
        check(f"user partition {p}: fold", a.engine.fold, b.engine.fold)
        check(f"user partition {p}: users", sorted(a.users), sorted(b.users))
        exported = b.users.export() if hasattr(b.users, "export") else dict(b.users)
        for uid, u in a.users.items():
            check(f"user {uid!r}", state_of(u, _USER_SLOTS), state_of(exported[uid], _USER_SLOTS))
    for p, (a, b) in enumerate(zip(py_a, na_a, strict=True)):
        check(f"account partition {p}: fold", a.engine.fold, b.engine.fold)
        check(f"account partition {p}: customers", sorted(a.accounts), sorted(b.accounts))
        for c, s in a.accounts.items():
            check(
                f"customer {c!r}",
                state_of(s, _ACCOUNT_SLOTS),
                state_of(b.accounts[c], _ACCOUNT_SLOTS),
            )


def assert_same(
    recs: list[Rec], cfg: Config, partitions: int, seed: int, encoded: bool = False
) -> dict[str, int]:
    """run_side_by_side; on a difference, the input is shrunk and the failure reported with the
    smallest failing records found."""
    try:
        return run_side_by_side(recs, cfg, partitions, seed, encoded=encoded)
    except Mismatch as exc:
        first = str(exc)

    def fails(rs: list[Any]) -> bool:
        try:
            run_side_by_side(rs, cfg, partitions, seed, encoded=encoded)
        except Mismatch:
            return True
        return False

    small = minimize(list(recs), fails, budget_s=30)
    try:
        run_side_by_side(small, cfg, partitions, seed, encoded=encoded)
        again = "(the shrunk input passes?)"
    except Exception as exc:
        again = str(exc)
    lines = "\n".join(repr(r) for r in small[:40])
    pytest.fail(f"{first}\n\nshrunk to {len(small)} records:\n{lines}\n\nwhich gives:\n{again}")


# ---- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "timezone", "partitions", "n", "days"),
    [
        (1, "UTC", 3, 2500, 12),
        (2, "America/New_York", 4, 2500, 40),  # DST change on 2026-11-01, expiry over 40 days
        (3, "Asia/Kolkata", 1, 1500, 5),
        (4, "UTC", 2, 1200, 0.5),  # dense: many duplicates per user, few sweeps
    ],
)
def test_random_micro_batches_side_by_side(
    seed: int, timezone: str, partitions: int, n: int, days: float
) -> None:
    cfg = Config.from_mapping({"timezone": timezone})
    recs = sim_records(seed, n, users=60, days=days, partitions=partitions, hostile=n // 20)
    seen = assert_same(recs, cfg, partitions, seed)
    assert seen["batches"] > 50 and seen["dead"] > 0 and seen["facts"] > 0
    assert seen["redelivered"] > 0 and seen["skipped"] > 0 and seen["ids"] > seen["batches"]
    if partitions > 1:
        assert seen["forwards"] > 0
    if days >= 5:
        assert seen["sweeps"] > 0 and seen["ids_dropped"] > 0


@pytest.mark.parametrize(
    ("seed", "timezone", "partitions", "n", "days"),
    [(5, "UTC", 3, 2500, 12), (6, "America/New_York", 2, 1500, 40), (7, "UTC", 1, 1200, 0.5)],
)
def test_messages_applied_from_their_bytes_side_by_side(
    seed: int, timezone: str, partitions: int, n: int, days: float
) -> None:
    """The worker's path: the core reads each micro-batch message and each facts message from
    its bytes (`apply_encoded`) and writes the facts as their messages; everything equal to the
    Python engine fed the decoded messages, the facts' messages equal to `encode_facts`'."""
    cfg = Config.from_mapping({"timezone": timezone})
    recs = sim_records(seed, n, users=60, days=days, partitions=partitions, hostile=n // 20)
    seen = assert_same(recs, cfg, partitions, seed, encoded=True)
    assert seen["batches"] > 50 and seen["dead"] > 0 and seen["facts"] > 0
    assert seen["redelivered"] > 0 and seen["skipped"] > 0
    # most messages went through the bytes path (the rest: a value the core cannot hold)
    assert seen["encoded_batches"] > seen["batches"] // 2
    assert seen["encoded_facts"] > 0
    if partitions > 1:
        assert seen["forwards"] > 0
    assert seen["handed_over"] == 0  # 18 fractional digits at most: the core held them all
    # the partials at a "now" moving forward came from the sums kept current, mostly
    assert seen["asked"] > 20 and seen["aggregate_answers"] > seen["asked"] // 2
    # and the customers' partials came from the rows kept between asks, mostly
    assert seen["account_asks"] > 20 and seen["popped"] > 0
    assert seen["rows_reused"] > seen["account_asks"]


def test_an_instant_finer_than_attoseconds_moves_the_partition_to_python() -> None:
    """A timestamp of 19+ fractional digits: the batch is refused before anything is applied
    and the partition goes on in Python, with the same results."""
    nl = _native()
    cfg = Config()
    recs = sim_records(7, 600, users=30, days=3, partitions=2, over_precise=0.05, max_digits=24)
    assert any(b"." in (r[5] or b"") for r in recs)
    seen = assert_same(recs, cfg, 2, 7)
    assert seen["handed_over"] > 0
    part = nl.NativeLiveUserPartition(cfg, 0, 1, 1)
    assert not part.handed_over


def test_states_with_over_precise_instants_load_in_python() -> None:
    nl = _native()
    cfg = Config()
    py = LiveUserPartition(cfg, 0, 1, 1)
    value = json.dumps(
        {
            "event_id": "e",
            "type": "page_view",
            "user_id": "u",
            "session_id": "s",
            "ts": "2026-11-01T00:00:00.1234567890123456789Z",
        }
    ).encode()
    py.apply(Batch(PE, 0, [(0, START_MS, b"u", value)]), 0)
    assert type(py.users["u"].last or py.users["u"].lastp[0]) is Fraction
    nat = nl.NativeLiveUserPartition(
        cfg, 0, 1, 1, users=dict(py.users), meta=codec.decode_meta(codec.encode_meta(py.meta))
    )
    assert nat.handed_over
    # one the core can hold (9 < digits <= 18) stays compiled, exactly
    py = LiveUserPartition(cfg, 0, 1, 1)
    value = value.replace(b"1234567890123456789Z", b"123456789012Z")
    py.apply(Batch(PE, 0, [(0, START_MS, b"u", value)]), 0)
    u = py.users["u"]
    assert type(u.last or u.lastp[0]) is Fraction
    nat = nl.NativeLiveUserPartition(
        cfg, 0, 1, 1, users={"u": u}, meta=codec.decode_meta(codec.encode_meta(py.meta))
    )
    assert not nat.handed_over
    assert state_of(nat.users["u"], _USER_SLOTS) == state_of(u, _USER_SLOTS)


def test_loading_and_exporting_round_trips() -> None:
    """A state written by the Python partition, loaded into the compiled one, exports equal."""
    nl = _native()
    cfg = Config.from_mapping({"timezone": "Europe/Paris"})
    recs = sim_records(5, 1500, users=40, days=10, partitions=1)
    py = LiveUserPartition(cfg, 0, 1, 1)
    pa = LiveAccountPartition(cfg, 0)
    for i, b in enumerate(micro_batches(recs, random.Random(5), 30)):
        o = py.apply(b, i)
        for fs in o.facts.values():
            pa.apply(fs, i)
    nat = nl.NativeLiveUserPartition(
        cfg,
        0,
        1,
        1,
        users={k: codec.decode_user(codec.encode_user(v)) for k, v in py.users.items()},
        meta=codec.decode_meta(codec.encode_meta(py.meta)),
    )
    na = nl.NativeLiveAccountPartition(
        cfg,
        0,
        accounts={k: codec.decode_account(codec.encode_account(v)) for k, v in pa.accounts.items()},
        meta=codec.decode_account_meta(codec.encode_account_meta(pa.meta)),
    )
    assert len(nat.users) == len(py.users) > 10 and len(na.accounts) == len(pa.accounts) > 5
    for uid, u in py.users.items():
        assert state_of(nat.users[uid], _USER_SLOTS) == state_of(u, _USER_SLOTS), uid
    for c, a in pa.accounts.items():
        assert state_of(na.accounts[c], _ACCOUNT_SLOTS) == state_of(a, _ACCOUNT_SLOTS), c
    assert meta_of(nat.meta) == meta_of(py.meta)
    assert nat.engine.fold == py.engine.fold and na.engine.fold == pa.engine.fold
    # the view: get, pop (a forget), iteration
    some = next(iter(py.users))
    assert nat.users.get("nobody") is None and "nobody" not in nat.users
    assert state_of(nat.users.pop(some), _USER_SLOTS) == state_of(py.users[some], _USER_SLOTS)
    assert some not in nat.users and len(nat.users) == len(py.users) - 1
    assert nat.users.pop(some, None) is None
    assert isinstance(na.meta, AccountMeta)


@pytest.mark.parametrize(
    "case",
    [
        tle.test_state_and_table_stay_bounded_in_a_flood_of_unique_users,
        tle.test_a_sweep_cut_short_by_a_crash_is_completed_on_redelivery,
        tle.test_a_slow_source_holds_expiry_back_an_idle_one_does_not,
    ],
    ids=lambda f: f.__name__,
)
def test_live_expiry_cases_on_the_native_twin(case: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    nl = _native()
    monkeypatch.setattr(tle, "LiveUserPartition", nl.NativeLiveUserPartition)
    case()


def test_murmur2_and_the_partitioner_agree_with_python() -> None:
    _native()
    import engagement_native as core

    rng = random.Random(3)
    keys = [b"", b"a", b"ab", b"abc", b"abcd", "héllo-ü".encode(), "😀".encode()]
    keys += [bytes(rng.randrange(256) for _ in range(rng.randrange(40))) for _ in range(3000)]
    keys += [f"user-{i}".encode() for i in range(2000)]
    for k in keys:
        assert core.murmur2(k) == murmur2(k), k
        for n in (1, 2, 3, 8, 12, 100):
            assert core.kafka_partition(k, n) == kafka_partition(k, n), (k, n)
    with pytest.raises(ValueError):
        core.kafka_partition(b"x", 0)


def test_partition_classes() -> None:
    nl = _native()
    assert nl.partition_classes() == (nl.NativeLiveUserPartition, nl.NativeLiveAccountPartition)
    assert nl.partition_classes("native") == nl.partition_classes("auto")
    assert nl.partition_classes("python") == (LiveUserPartition, LiveAccountPartition)
    with pytest.raises(ValueError):
        nl.partition_classes("rust")


def test_the_core_restates_what_streams_defines() -> None:
    from streams import native

    _native()
    assert native.check_contract() == []

    class Fake:
        pass

    fake = Fake()
    for name in dir(native._native):
        if name.isupper():
            setattr(fake, name, getattr(native._native, name))
    fake.K_ORDER = 9  # type: ignore[attr-defined]
    fake.USER_SLOTS = ("answers",)  # type: ignore[attr-defined]
    problems = native.contract_problems(fake)
    assert len(problems) == 2 and problems[0].startswith("K_ORDER: 9 in the compiled core")


def test_a_fold_limit_given_at_load_holds_a_stored_watermark_ahead_of_the_clock() -> None:
    """A worker loading a partition whose stored watermark is ahead of its clock: the fold
    point stays at the clock minus the margin in both engines (the worker must answer for its
    own "now" after a restart)."""
    nl = _native()
    cfg = Config()
    recs = sim_records(6, 400, users=20, days=3, partitions=1)
    py = LiveUserPartition(cfg, 0, 1, 1)
    pa = LiveAccountPartition(cfg, 0)
    for i, b in enumerate(micro_batches(recs, random.Random(6), 25)):
        for fs in py.apply(b, i).facts.values():
            pa.apply(fs, i)
    assert py.meta.watermark is not None and pa.meta.watermark is not None
    limit = py.meta.watermark - 3 * DAY  # the clock, minus the margin: days behind the records
    users = {k: codec.decode_user(codec.encode_user(v)) for k, v in py.users.items()}
    for cls in (LiveUserPartition, nl.NativeLiveUserPartition):
        part = cls(cfg, 0, 1, 1, users=dict(users), meta=py.meta, fold_limit=limit)
        assert part.engine.fold == limit, cls
    for acls in (LiveAccountPartition, nl.NativeLiveAccountPartition):
        apart = acls(cfg, 0, accounts=dict(pa.accounts), meta=pa.meta, fold_limit=limit)
        assert apart.engine.fold == limit, acls
    # without it, the stored watermark moves the fold point past the clock (the old defect)
    assert LiveUserPartition(cfg, 0, 1, 1, users=dict(users), meta=py.meta).engine.fold > limit


def test_the_customers_rows_hold_until_a_boundary_and_no_further() -> None:
    """The rows a compiled account partition keeps between asks (native/src/account_partial.rs)
    answer only while every instant they depend on is on the same side of T: asked one
    nanosecond before, at and after each such instant (an order's 30 and 90 days, a
    subscription's 30 days, a pending answer, a first activity, a day's start), backwards too,
    and after a customer is removed, the partial equals the Python engine's."""
    cfg = Config()
    t0 = START_MS * MS
    nl = _native()
    py, na = LiveAccountPartition(cfg, 0), nl.NativeLiveAccountPartition(cfg, 0)

    def fact(c: str, ts: int, activity: bool, kind: int, value: float, off: int) -> Fact:
        return (c, ts, ts, activity, kind, value, "product-events", 0, off, 0)

    facts = [
        fact("a", t0, True, K_SUB_START, 0.0, 1),
        fact("a", t0 + HOUR, True, K_ORDER, 19.5, 2),
        fact("a", t0 + 2 * HOUR, False, K_NPS, 9, 3),
        fact("b", t0 + 3 * HOUR, True, K_NONE, 0.0, 4),
        fact("c", t0 + 4 * HOUR, True, K_CSAT, 2, 5),
        fact("c", t0 + 5 * DAY, False, K_SUB_START, 0.0, 6),
        fact("c", t0 + 6 * DAY, False, K_SUB_CANCEL, 0.0, 7),
        fact("c", t0 + 7 * DAY, True, K_ORDER, 5.25, 8),
        fact("c", t0 + 8 * DAY, True, K_ORDER, 7.0, 9),
        fact("d", t0 + 9 * DAY, True, K_NPS, 3, 10),
    ]
    for p in (py, na):
        p.engine.fold_limit = t0 + 2 * DAY  # the later facts stay pending
        p.apply(facts[:6], 0)
        p.apply(facts[6:], 1)
    edges = {t0 + 9 * DAY + 5}
    for f in facts:
        ts = f[1]
        edges |= {ts, ts + 30 * DAY, ts + 90 * DAY, ts - ts % DAY + DAY}
    asks = []
    for x in sorted(edges):
        asks += [x - 1, x, x + 1]
    asks += asks[::-3]
    reused = na._core.rows_reused
    for i, t in enumerate(asks):
        if i == len(asks) // 2:  # the first customer removed: the last one takes its place
            check("popped", py.accounts.pop("a") is None, na.accounts.pop("a") is None)
        check(f"partial at {t}", partial_of(py.engine.partial(t)), partial_of(na.engine.partial(t)))
    assert na._core.rows_reused - reused > len(asks)  # and most answers came from the rows


def test_the_footprint_counts_what_the_partitions_hold() -> None:
    """`footprint()` (bench/core_memory.py's table of where the core's heap goes) counts the
    entities and their lists' items as the exported states hold them, and its bytes are within
    what the core's own allocation count says the partitions took."""
    from streams import native_live

    nl = _native()
    cfg = Config.from_mapping({"timezone": "Europe/Paris"})
    recs = sim_records(9, 3000, users=120, days=10, partitions=1)
    heap0 = native_live.core_heap_bytes()
    part = nl.NativeLiveUserPartition(cfg, 0, 1, 1)
    acct = nl.NativeLiveAccountPartition(cfg, 0)
    for i, b in enumerate(micro_batches(recs, random.Random(9), 40)):
        o = part.apply(b, i)
        for fs in o.facts.values():
            acct.apply(fs, i)
    users = dict(part.users.items())
    customers = dict(acct.accounts.items())
    assert len(users) > 50 and len(customers) > 10

    def table(rows: list[tuple[str, int, int]]) -> dict[str, tuple[int, int]]:
        names = [r[0] for r in rows]
        assert len(names) == len(set(names)), names
        return {name: (items, nbytes) for name, items, nbytes in rows}

    fu = table(part._core.footprint())
    fa = table(acct._core.footprint())
    n = lambda x: len(x or ())  # noqa: E731
    assert fu["entity structs"][0] == fu["entity ids"][0] == len(users)
    assert fu["active days"][0] == sum(n(u.days) for u in users.values())
    assert fu["milestones"][0] == sum(n(u.ms) for u in users.values())
    assert fu["pending activity (after the fold)"][0] == sum(n(u.lastp) for u in users.values())
    assert fu["rare parts: facts and answers"][0] == sum(
        n(u.facts) + n(u.answers) for u in users.values()
    )
    assert fu["event ids (dedupe)"][0] == sum(n(u.ids) for u in users.values()) > 0
    assert fa["entity structs"][0] == len(customers)
    assert fa["active days"][0] == sum(n(a.days) for a in customers.values())
    assert fa["pending (after the fold)"][0] == sum(
        n(a.lastp) + n(a.npsp) + n(a.csatp) + n(a.subp) for a in customers.values()
    )
    # each part's bytes hold at least its items, and all of them fit in what the core took
    assert fu["active days"][1] >= 24 * fu["active days"][0]
    assert fu["milestones"][1] >= 32 * fu["milestones"][0]
    held = native_live.core_heap_bytes() - heap0
    counted = sum(b for _, b in fu.values()) + sum(b for _, b in fa.values())
    assert 0 < counted <= held, (counted, held)


def test_a_churning_partition_scans_and_the_first_quiet_ask_rebuilds_its_sums() -> None:
    """When more than a quarter of a partition's users (and more than a few hundred) change
    between two asks, the sums are dropped and the asks scan; the first ask after fewer changes
    builds them again, and the asks after it come from the sums (native/src/aggregate.rs,
    decisions 55 and 58). Every answer equals the scan's."""
    nl = _native()
    cfg = Config()
    users = 3000
    recs = sim_records(21, 24000, users=users, days=2, partitions=1, over_precise=0)
    recs.sort(key=lambda r: r[3])  # record time order: "now" moves forward with the records
    part = nl.NativeLiveUserPartition(cfg, 0, 1, 1)
    core = part._core
    applied = 0

    def apply(rs: list[Rec]) -> int:
        """Apply `rs` as one micro-batch per source; the newest record time (ns)."""
        nonlocal applied
        per: dict[tuple[str, int], list[Any]] = {}
        for topic, p, off, rts, key, value in rs:
            per.setdefault((topic, p), []).append((off, rts, key, value))
        for (topic, p), items in per.items():
            part.apply(Batch(topic, p, items), applied)
            applied += 1
        return max(r[3] for r in rs) * MS

    def ask(t: int) -> bool:
        """Ask at t: whether the sums answered; the answer must be the scan's."""
        before = core.aggregate_answers
        got = partial_of(part.engine.partial(t))
        assert partial_of(nl._user_partial(core.partial(t, scan=True))) == got
        return core.aggregate_answers == before + 1

    half = len(recs) // 2
    t = apply(recs[:half]) + 1
    assert not ask(t)  # every user changed since the partition began: a scan
    assert ask(t + 1)  # nothing changed since: the sums are built, and answer
    assert ask(t + 2)
    rest = recs[half:]
    # a burst touching most users: the next asks scan
    burst = rest[: len(rest) // 2]
    t = apply(burst) + 1
    assert len({r[4] for r in burst}) > max(500, users // 4)
    assert not ask(t)
    assert ask(t + 1)  # the first quiet ask builds the sums again, and they answer
    # a few records: the sums keep answering
    t = apply(rest[len(rest) // 2 : len(rest) // 2 + 20]) + 1
    assert ask(t)
    assert ask(t + 1)
