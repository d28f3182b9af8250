"""The benchmark's expert peers (bench/peer_quix_state.py, Quix Streams; bench/kafka_streams/,
Kafka Streams) compute what bench/README.md ("The expert peers") says, on a real broker.

A deterministic input goes to the test's own topics (8 partitions): the simulate mix over 35 days
with 5% bad records (every reject reason, duplicates, misrouted keys), then hand-written CSAT
answers and events for the last day (duplicates, every `ts` form, scores that are not integers,
future and too-late ones, a wrong key, a byte-order mark, NaN). Each peer runs on it as the bench
runs it, and its per-partition figures (the partition's day, DAU, MAU, the users' active days,
CSAT over the last 24 hours) must equal the ones this test computes from the same records with
a reference of its own: a batch computation (sets of days per user, a list of answers), with the
rules written again here from the README (Python's json module, datetime), sharing no code with
the peers. So the bench compares them with ours on the same work.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from agents import admin
from bench import peer_kstreams
from streams.partitioner import kafka_partition
from streams.simulate import SimConfig, Simulator, value_bytes
from tests.integration.conftest import REPO, Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PARTITIONS = 8
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
END_MS = 1_796_000_000_000  # 2026-11-28T...: fixed, so the input is the same on every run

Rec = tuple[str, bytes | None, bytes | None, int]  # topic, key, value, record timestamp (ms)


# ---- the input ---------------------------------------------------------------------------------


def simulated() -> list[Rec]:
    days = 35
    cfg = SimConfig(start_ms=END_MS - days * DAY_MS, duration_s=days * 86400.0, users=250,
                    rate=3000 / (days * 86400.0), seed=11, partitions=PARTITIONS,
                    max_records=3000, bad_fraction=0.05)  # fmt: skip
    out: list[Rec] = []
    for env in Simulator(cfg):
        key, payload = env["key"], env["payload"]
        out.append((env["topic"], None if key is None else key.encode("utf-8", "surrogatepass"),
                    None if payload is None else value_bytes(payload), env["ts"]))  # fmt: skip
    return out


def _iso(ms: int, sep: str = "T", zone: str = "Z") -> str:
    t = datetime.fromtimestamp(ms / 1000, UTC)
    return t.strftime(f"%Y-%m-%d{sep}%H:%M:%S.") + f"{ms % 1000:03d}{zone}"


def rule_cases(t: int) -> list[tuple[str, dict[str, Any], bool]]:
    """Events of one fresh user each, at record time about `t`: (type, fields, counted?)."""
    deep64: dict[str, Any] = {"x": 0}
    for _ in range(62):
        deep64 = {"x": deep64}  # with the record object: 64 levels
    now = _iso(t)
    return [
        ("purchase", {"props": {"order_id": "o-1", "amount": 12}}, True),  # counted
        ("purchase", {"props": {"order_id": "o-1", "amount": 0.5}}, True),  # counted
        ("purchase", {"props": {"order_id": "o-1", "amount": -5}}, False),
        ("purchase", {"props": {"order_id": "o-1", "amount": "12"}}, False),
        ("purchase", {"props": {"amount": 3}}, False),  # no order_id
        ("social_interaction", {"props": {"action": "like"}}, True),  # counted
        ("social_interaction", {"props": {"action": "poke"}}, False),
        ("social_interaction", {}, False),
        ("ticket_opened", {"props": {"ticket_id": "t-1", "category": "billing"}}, True),  # counted
        ("ticket_opened", {"props": {"ticket_id": "t-1"}}, False),
        ("ticket_resolved", {"props": {"ticket_id": ""}}, False),
        ("return", {"props": {"order_id": "o-1"}}, True),  # counted
        ("click", {"props": {"placement": "hero"}}, True),  # counted
        ("click", {"props": {"placement": 42}}, False),
        ("click", {"props": {"placement": None}}, True),  # counted: null is absent
        ("onboarding_step", {"props": {"step": "welcome"}}, True),  # counted
        ("onboarding_step", {"props": {"step": 3}}, False),
        ("feature_used", {"props": {"feature": "x" * 128}}, True),  # counted
        ("feature_used", {"props": {"feature": "x" * 129}}, False),
        ("key_action", {"account_id": ""}, False),
        ("key_action", {"account_id": "acme"}, True),  # counted
        ("key_action", {"props": "oops"}, False),
        ("key_action", {"event_id": "e" * 129}, False),
        ("session_start", {"session_id": ""}, False),
        ("session_start", {"session_id": "s-9"}, True),  # counted
        ("Key_action", {}, False),
        ("key_action", {"deep": deep64}, True),  # counted
        ("key_action", {"deep": {"x": deep64}}, False),  # 65 levels
        ("custom_thing_1", {"ts": t - 60_000}, True),  # counted: epoch ms
        ("key_action", {"ts": now.replace(".", ",")}, False),
        ("key_action", {"ts": "2026-02-30T10:00:00Z"}, False),
    ]


def handwritten(users: list[str]) -> list[Rec]:
    """Answers and events after the simulated stream, exercising the rules one by one."""
    out: list[Rec] = []
    t = END_MS + 60_000

    def answer(user: str, rid: str, score: Any, ts: Any, key: str | None = None, **kw: Any) -> None:
        nonlocal t
        t += 97_000
        body = {"response_id": rid, "survey": kw.pop("survey", "csat"), "score": score,
                "user_id": user, "ts": ts, **kw}  # fmt: skip
        k = user if key is None else key
        out.append(("survey-answers", k.encode(), json.dumps(body).encode(), t))

    def event(user: str, typ: str, ts: Any, **kw: Any) -> None:
        nonlocal t
        t += 61_000
        body = {"event_id": f"h-{len(out)}", "type": typ, "user_id": user, "ts": ts, **kw}
        out.append(("product-events", user.encode(), json.dumps(body).encode(), t))

    for i, u in enumerate(users):
        answer(u, f"hw-{i}", 1 + i % 5, _iso(t))  # counted
        answer(u, f"hw-{i}", 5, _iso(t))  # the same response id again: a duplicate
        answer(u, f"hw-{i}-int", 4, t - 3_600_000)  # epoch ms, an hour back
        answer(u, f"hw-{i}-off", 2, _iso(t + 2 * HOUR_MS).replace("Z", "+02:00"))  # offset
        answer(u, f"hw-{i}-lc", 5, _iso(t, "t", "z"))  # lower-case t and z
        answer(u, f"hw-{i}-us", 3, _iso(t)[:-1] + "123456Z")  # microseconds
        answer(u, f"hw-{i}-float", 4.0, _iso(t))  # not an integer
        answer(u, f"hw-{i}-bool", True, _iso(t))  # not an integer either
        answer(u, f"hw-{i}-11", 11, _iso(t))  # out of range
        answer(u, f"hw-{i}-nps", 9, _iso(t), survey="nps")  # not CSAT
        answer(u, f"hw-{i}-fut", 5, _iso(t + 2 * HOUR_MS))  # future
        answer(u, f"hw-{i}-late", 5, _iso(t - 49 * HOUR_MS))  # too late
        answer(u, f"hw-{i}-old", 1, _iso(t - 30 * HOUR_MS))  # accepted, outside the 24 h
        answer(u, f"hw-{i}-key", 5, _iso(t), key=users[(i + 1) % len(users)])  # wrong key
        answer(u, f"hw-{i}-sp", 5, _iso(t).replace("T", " "))  # a space: not RFC 3339
        answer(u, f"hw-{i}-60", 5, _iso(t)[:17] + "60.000Z")  # second 60
        event(u, "page_view", _iso(t), session_id="s-1")  # active today
        event(u, "page_view", _iso(t))  # no session_id: not counted
        event(u, "feature_used", _iso(t), props={"feature": ""})  # an empty feature
        event(u, "impression", _iso(t))  # not activity
        event(u, "key_action", _iso(t - DAY_MS))  # yesterday, still within 48 h
    # one fresh user per case: counted (active today) only if the event passes every rule
    cases = rule_cases(t)
    for i, (typ, extra, _counted) in enumerate(cases):
        t += 61_000
        user = f"rule-{i}"
        body = {"event_id": f"r-{i}", "type": typ, "user_id": user, "ts": _iso(t), **extra}
        out.append(("product-events", user.encode(), json.dumps(body).encode(), t))
    # values that are not JSON, or not an object
    u = users[0]
    good = json.dumps({"response_id": "x-bom", "survey": "csat", "score": 5, "user_id": u,
                       "ts": _iso(t)}).encode()  # fmt: skip
    out.append(("survey-answers", u.encode(), b"\xef\xbb\xbf" + good, t))
    out.append(("survey-answers", u.encode(), good[:-1] + b',"x":NaN}', t))
    out.append(("survey-answers", u.encode(), b'["not", "an", "object"]', t))
    out.append(("survey-answers", u.encode(), None, t))
    return out


async def _produce(bootstrap: str, prefix: str, records: list[Rec]) -> None:
    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await prod.start()
    try:
        futs = []
        for topic, key, value, ts in records:
            part = kafka_partition(key, PARTITIONS) if key is not None else ts % PARTITIONS
            futs.append(await prod.send(prefix + topic, value, key=key, partition=part,
                                        timestamp_ms=ts))  # fmt: skip
        await asyncio.gather(*futs)
    finally:
        await prod.stop()


# ---- the reference -----------------------------------------------------------------------------

TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
STAMP = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(\.\d+)?(?:[Zz]|([+-]\d\d):(\d\d))",
    re.ASCII,
)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def ref_object(value: bytes | None) -> dict[str, Any] | None:
    if value is None or len(value) > 65_536:
        return None
    try:
        obj = json.loads(value.decode("utf-8"), parse_constant=_no_constant)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError (a BOM included) are ValueErrors
        return None
    return obj if isinstance(obj, dict) else None


def ref_ts(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if not isinstance(v, str):
        return None
    m = STAMP.fullmatch(v)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    try:
        t = datetime(y, mo, d, h, mi, s, tzinfo=UTC)
    except ValueError:
        return None
    if m.group(8):
        sign = -1 if m.group(8)[0] == "-" else 1
        oh, om = int(m.group(8)[1:]), int(m.group(9))
        if oh > 23 or om > 59:
            return None
        t -= sign * timedelta(hours=oh, minutes=om)
    frac = int(((m.group(7) or ".")[1:] + "000")[:3])
    return int((t - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1000 + frac


def ref_name(v: Any) -> bool:
    return isinstance(v, str) and 1 <= len(v) <= 128


def ref_depth(v: Any) -> int:
    if isinstance(v, dict):
        return 1 + max((ref_depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((ref_depth(x) for x in v), default=0)
    return 0


def ref_checked(obj: dict[str, Any], key: bytes | None, rts: int) -> int | None:
    user = obj.get("user_id")
    if not ref_name(user) or key != user.encode("utf-8", "surrogatepass"):
        return None
    ts = ref_ts(obj.get("ts"))
    if ts is None or not rts - 48 * HOUR_MS <= ts <= rts + HOUR_MS:
        return None
    return ts


REQUIRED_PROPS = {
    "onboarding_step": ["step"],
    "feature_used": ["feature"],
    "purchase": ["order_id"],
    "return": ["order_id"],
    "ticket_opened": ["ticket_id", "category"],
    "ticket_resolved": ["ticket_id"],
}


def ref_activity(obj: dict[str, Any]) -> bool:
    typ = obj.get("type")
    if not isinstance(typ, str) or not TYPE.fullmatch(typ) or typ == "impression":
        return False
    if not ref_name(obj.get("event_id")) or ref_depth(obj) > 64:
        return False
    for optional in ("account_id", "session_id"):
        if obj.get(optional) is not None and not ref_name(obj[optional]):
            return False
    props = obj.get("props")
    if props is not None and not isinstance(props, dict):
        return False
    props = props or {}
    if typ in REQUIRED_PROPS and (
        not obj.get("props") or not all(ref_name(props.get(n)) for n in REQUIRED_PROPS[typ])
    ):
        return False
    if typ in ("session_start", "session_end", "page_view"):
        return obj.get("session_id") is not None
    if typ == "purchase":
        amount = props.get("amount")
        return isinstance(amount, int | float) and not isinstance(amount, bool) and amount >= 0
    if typ == "social_interaction":
        return props.get("action") in ("like", "share", "comment", "mention", "save")
    if typ == "click":
        return props.get("placement") is None or ref_name(props.get("placement"))
    return True


def reference(records: list[Rec]) -> dict[str, dict[str, Any]]:
    days: dict[int, dict[bytes, set[int]]] = defaultdict(lambda: defaultdict(set))
    answers: dict[int, list[tuple[int, int]]] = defaultdict(list)  # partition -> (hour, score)
    seen: set[tuple[bytes, str]] = set()
    for topic, key, value, rts in records:
        part = kafka_partition(key, PARTITIONS) if key is not None else rts % PARTITIONS
        obj = ref_object(value)
        if obj is None:
            continue
        if topic == "product-events":
            ts = ref_checked(obj, key, rts) if ref_activity(obj) else None
            if ts is not None:
                assert key is not None
                days[part][key].add(ts // DAY_MS)
        else:
            score, rid = obj.get("score"), obj.get("response_id")
            if (obj.get("survey") != "csat" or isinstance(score, bool)
                    or not isinstance(score, int) or not 1 <= score <= 5
                    or not ref_name(rid) or ref_depth(obj) > 64
                    or any(obj.get(f) is not None and not ref_name(obj[f])
                           for f in ("account_id", "touchpoint"))):  # fmt: skip
                continue
            ts = ref_checked(obj, key, rts)
            if ts is None or (key, rid) in seen:
                continue
            assert key is not None
            seen.add((key, rid))
            answers[part].append((ts // HOUR_MS, score))
    out: dict[str, dict[str, Any]] = {}
    for p, users in days.items():
        d0 = max(d for ds in users.values() for d in ds)
        window = {u.decode(): len([d for d in ds if d0 - 30 < d <= d0]) for u, ds in users.items()}
        window = {u: n for u, n in window.items() if n}
        out.setdefault(str(p), {}).update(
            day=d0,
            dau=sum(1 for ds in users.values() if d0 in ds),
            mau=len(window),
            user_days=sum(window.values()),
            users=dict(sorted(window.items())),
        )
    for p, got in answers.items():
        h0 = max(h for h, _ in got)
        last = [s for h, s in got if h0 - 24 < h <= h0]
        out.setdefault(str(p), {}).update(
            hour=h0, csat_responses=len(last), csat_positive=sum(1 for s in last if s >= 4)
        )
    return out


# ---- the test ----------------------------------------------------------------------------------


@pytest.fixture
def loaded(stack: Stack, topics: dict[str, str], topic_prefix: str) -> Iterator[tuple[int, Any]]:
    records = simulated()
    users = sorted({k.decode() for t, k, _v, _ts in records if k and t == "product-events"})[:24]
    records += handwritten(users)
    asyncio.run(_produce(stack.kafka_bootstrap, topic_prefix, records))
    yield len(records), reference(records)
    # the peers' internal topics (Quix names its changelogs after the consumer group)
    names = [n for n in asyncio.run(admin.list_topics(stack.kafka_bootstrap)) if topic_prefix in n]
    asyncio.run(admin.delete_topics(stack.kafka_bootstrap, names))


def test_the_reference_counts_the_rule_cases_as_written() -> None:
    """The reference itself, against the cases' hand-written verdicts (no broker needed)."""
    records = handwritten(["u-a", "u-b"])
    want = reference(records)
    counted = {u for p in want.values() for u in p.get("users", {}) if u.startswith("rule-")}
    expect = {f"rule-{i}" for i, (_t, _f, ok) in enumerate(rule_cases(END_MS)) if ok}
    assert counted == expect
    assert len(expect) == 13
    # per user of the two: the first answer (hw-0: score 1; hw-1: 2), the epoch-ms one (4), the
    # offset one (2), the lower-case one (5), the microseconds one (3), and the 30 h old one
    # outside the last 24 hours: 5 answers each, 2 positive
    csat = [(p["csat_responses"], p["csat_positive"]) for p in want.values() if "hour" in p]
    assert sum(n for n, _ in csat) == 10 and sum(k for _, k in csat) == 4


def _check(got: dict[str, Any], want: dict[str, dict[str, Any]], records: int) -> None:
    assert got["records"] == records
    assert got["first"] <= got["last"] and got["cpu_first"] <= got["cpu_last"]
    parts = got["partitions"]
    assert set(want) == set(range_str(PARTITIONS)), "the input reaches every partition"
    assert sum(w.get("csat_responses", 0) for w in want.values()) > 24
    for p, w in sorted(want.items()):
        assert parts.get(p) == w, f"partition {p}"


def range_str(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def _env(stack: Stack, prefix: str, records: int, state: str) -> dict[str, str]:
    return {**os.environ, "KAFKA_BOOTSTRAP": stack.kafka_bootstrap, "BENCH_PREFIX": prefix,
            "BENCH_EXPECT": str(records), "BENCH_STATE": state, "BENCH_DUMP": "1",
            "BENCH_TIMEOUT": "120", "PYTHONPATH": str(REPO)}  # fmt: skip


def _last_json(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def test_quix_state_peer_matches_the_reference(
    stack: Stack, topic_prefix: str, loaded: tuple[int, Any], tmp_path: Any
) -> None:
    records, want = loaded
    r = subprocess.run([sys.executable, str(REPO / "bench" / "peer_quix_state.py")], cwd=REPO,
                       env=_env(stack, topic_prefix, records, str(tmp_path / "quix")),
                       capture_output=True, text=True, timeout=150,
                       stdin=subprocess.DEVNULL)  # fmt: skip
    _check(_last_json(r), want, records)


def test_kafka_streams_peer_matches_the_reference(
    stack: Stack, topic_prefix: str, loaded: tuple[int, Any], tmp_path: Any
) -> None:
    classpath = peer_kstreams.build()
    r = subprocess.run(peer_kstreams.command(classpath), cwd=REPO,
                       env=_env(stack, topic_prefix, records := loaded[0], str(tmp_path / "ks")),
                       capture_output=True, text=True, timeout=150,
                       stdin=subprocess.DEVNULL)  # fmt: skip
    _check(_last_json(r), loaded[1], records)
