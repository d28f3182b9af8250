"""streams.simulate: the seeded record stream and Kafka's default partitioner."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import Any

import pytest

from streams.config import Config
from streams.errors import Reject
from streams.records import decode_product, decode_survey, time_reason
from streams.replay import replay_lines
from streams.simulate import (
    COMMENTS,
    FEATURES,
    ONBOARDING_STEPS,
    PRODUCT_TOPIC,
    REJECT_REASONS,
    SOCIAL_ACTIONS,
    SURVEY_TOPIC,
    SimConfig,
    Simulator,
    envelope_line,
    kafka_partition,
    murmur2,
    simulate,
    value_bytes,
)

START_MS = 1_790_000_000_000  # 2026-09-21T14:13:20Z

# Produced by Kafka's own code (kafka-clients 3.9.0 from Maven Central, a 20-line Java program
# calling org.apache.kafka.common.utils.Utils.murmur2 and
# org.apache.kafka.clients.producer.internals.BuiltInPartitioner.partitionForKey).
# The first lines are also the cases of Kafka's UtilsTest.testMurmur2.
KAFKA_VECTORS: list[tuple[bytes, int, dict[int, int]]] = [
    (b"21", -973932308, {1: 0, 3: 0, 6: 0, 12: 0, 100: 40}),
    (b"foobar", -790332482, {1: 0, 3: 0, 6: 0, 12: 6, 100: 66}),
    (b"a-little-bit-long-string", -985981536, {1: 0, 3: 2, 6: 2, 12: 8, 100: 12}),
    (b"a-little-bit-longer-string", -1486304829, {1: 0, 3: 2, 6: 5, 12: 11, 100: 19}),
    (
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
        -58897971,
        {1: 0, 3: 2, 6: 5, 12: 5, 100: 77},
    ),
    (b"abc", 479470107, {1: 0, 3: 0, 6: 3, 12: 3, 100: 7}),
    (b"", 275646681, {1: 0, 3: 0, 6: 3, 12: 9, 100: 81}),
    (b"a", -1563381124, {1: 0, 3: 1, 6: 4, 12: 4, 100: 24}),
    (b"ab", 316155434, {1: 0, 3: 2, 6: 2, 12: 2, 100: 34}),
    (b"u-0", 1036460605, {1: 0, 3: 1, 6: 1, 12: 1, 100: 5}),
    (b"u-1", -766518409, {1: 0, 3: 1, 6: 1, 12: 7, 100: 39}),
    (b"u-42", -1954991815, {1: 0, 3: 1, 6: 1, 12: 1, 100: 33}),
    (b"u-1234", -378501402, {1: 0, 3: 2, 6: 2, 12: 2, 100: 46}),
    (b"u-99999", 881700139, {1: 0, 3: 1, 6: 1, 12: 7, 100: 39}),
    (b"acct-7", 101294788, {1: 0, 3: 1, 6: 4, 12: 4, 100: 88}),
    (
        "user-été-日本".encode(),
        253693417,
        {1: 0, 3: 1, 6: 1, 12: 1, 100: 17},
    ),
    (b"\xff\x80\x00\x01\xfe", -173560464, {7: 2}),
]

PRODUCT_TYPES = {
    "signup",
    "profile_completed",
    "key_action",
    "onboarding_step",
    "feature_used",
    "session_start",
    "session_end",
    "page_view",
    "click",
    "impression",
    "purchase",
    "return",
    "subscription_started",
    "subscription_cancelled",
    "ticket_opened",
    "ticket_resolved",
    "social_interaction",
}


def _cfg(**kw: Any) -> SimConfig:
    base: dict[str, Any] = {
        "start_ms": START_MS,
        "duration_s": 2 * 3600,
        "users": 300,
        "rate": 2.0,
        "seed": 7,
        "partitions": 4,
        "bad_fraction": 0.02,
    }
    base.update(kw)
    return SimConfig(**base)


# ---- the partitioner -------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "hash_", "partitions"), KAFKA_VECTORS)
def test_murmur2_and_partition_match_kafka(
    key: bytes, hash_: int, partitions: dict[int, int]
) -> None:
    assert murmur2(key) == hash_
    for n, p in partitions.items():
        assert kafka_partition(key, n) == p


def test_partition_needs_a_partition() -> None:
    with pytest.raises(ValueError):
        kafka_partition(b"u-1", 0)


# ---- the stream ------------------------------------------------------------------------------


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    a = list(simulate(_cfg()))
    b = list(simulate(_cfg()))
    c = list(simulate(_cfg(seed=8)))
    assert a == b
    assert a != c
    assert len(a) == len(c) == _cfg().record_count == 2 * 3600 * 2


def test_record_ts_non_decreasing_and_spaced_by_rate() -> None:
    cfg = _cfg(rate=7.3, duration_s=3600)
    ts = [r["ts"] for r in simulate(cfg)]
    assert ts[0] == START_MS
    assert all(x <= y for x, y in itertools.pairwise(ts))
    assert ts[-1] < cfg.end_ms
    assert len(ts) == int(3600 * 7.3)


def test_max_records_and_high_rates() -> None:
    cfg = _cfg(rate=5000.0, duration_s=60, max_records=10_000)
    recs = list(simulate(cfg))
    assert len(recs) == 10_000
    assert all(x["ts"] <= y["ts"] for x, y in itertools.pairwise(recs))


def test_envelopes_offsets_and_partitions() -> None:
    cfg = _cfg()
    sim = Simulator(cfg)
    next_offset: Counter[tuple[str, int]] = Counter()
    keyed_by_user = 0
    for rec in sim:
        assert set(rec) == {"topic", "partition", "offset", "ts", "key", "payload"}
        assert rec["topic"] in (PRODUCT_TOPIC, SURVEY_TOPIC)
        tp = (rec["topic"], rec["partition"])
        assert rec["offset"] == next_offset[tp]  # consecutive from 0 in each topic-partition
        next_offset[tp] += 1
        assert 0 <= rec["partition"] < cfg.partitions
        if rec["key"] is not None:
            assert rec["partition"] == kafka_partition(rec["key"].encode(), cfg.partitions)
        try:
            value = json.loads(rec["payload"])
        except (TypeError, ValueError):
            continue
        if isinstance(value, dict) and rec["key"] == value.get("user_id"):
            keyed_by_user += 1
    counts = sim.counts
    assert counts["records"] == cfg.record_count == sum(next_offset.values())
    assert counts[PRODUCT_TOPIC] + counts[SURVEY_TOPIC] == counts["records"]
    assert counts[SURVEY_TOPIC] > 0
    assert keyed_by_user > 0.95 * counts["records"]
    assert counts["misrouted"] > 0


def test_bad_fraction_roughly_respected() -> None:
    for fraction in (0.0, 0.01, 0.1):
        sim = Simulator(_cfg(bad_fraction=fraction, duration_s=6 * 3600))
        n = sum(1 for _ in sim)
        counts = sim.counts
        bad = sum(counts[k] for k in (*REJECT_REASONS, "duplicate"))
        assert bad == pytest.approx(fraction * n, rel=0.15, abs=5)
        if fraction:
            assert all(counts[k] > 0 for k in (*REJECT_REASONS, "duplicate"))
        else:
            assert counts["misrouted"] == 0


def test_duplicates_also_at_a_low_rate() -> None:
    sim = Simulator(_cfg(bad_fraction=0.05, rate=0.02, duration_s=20 * 86400))
    n = sum(1 for _ in sim)
    # a fifth of the bad records are duplicates (weights 3 of 15), however sparse the stream
    assert sim.counts["duplicate"] == pytest.approx(0.05 * n / 5, rel=0.25)


@pytest.mark.parametrize(("partitions", "lateness"), [(1, 48), (3, 48), (2, 1), (2, 5.5)])
def test_the_engine_rejects_exactly_what_was_meant(partitions: int, lateness: float) -> None:
    """Replayed through the engine, each bad record gets the reason it was made for."""
    cfg = _cfg(bad_fraction=0.05, partitions=partitions, allowed_lateness_hours=lateness)
    sim = Simulator(cfg)
    lines = [envelope_line(r) for r in sim]
    config = Config.from_mapping({"allowed_lateness_hours": lateness})
    snap = replay_lines(lines, config, "2026-09-21T17:00:00Z", partitions)
    counts = sim.counts
    assert snap["rejected"] == {r: counts[r] for r in REJECT_REASONS}
    assert snap["duplicates"] == counts["duplicate"]
    assert snap["accepted"] == counts["records"] - sum(
        counts[k] for k in (*REJECT_REASONS, "duplicate")
    )
    assert snap["dau"] > 0


def test_values_as_bytes_get_the_same_reasons() -> None:
    """What the live producer will send (value_bytes) is judged like the replay's strings."""
    sim = Simulator(_cfg(bad_fraction=0.05))
    got: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    lateness_ns = 48 * 3600 * 10**9
    for rec in sim:
        data = value_bytes(rec["payload"])
        try:
            if rec["topic"] == PRODUCT_TOPIC:
                ev, inst = decode_product(data)
                ident = (ev.user_id, ev.event_id)
            else:
                ans, inst = decode_survey(data)
                ident = (ans.user_id, ans.response_id)
        except Reject as exc:
            got[exc.reason] += 1
            continue
        reason = time_reason(inst, rec["ts"], lateness_ns)
        if reason is not None:
            got[reason] += 1
        elif ident in seen:
            got["duplicate"] += 1
        else:
            seen.add(ident)
    counts = sim.counts
    assert dict(got) == {k: counts[k] for k in (*REJECT_REASONS, "duplicate")}


def test_a_clean_stream_is_all_accepted() -> None:
    sim = Simulator(_cfg(bad_fraction=0.0, misrouted_fraction=0.0))
    lines = [envelope_line(r) for r in sim]
    assert all(json.loads(line)["key"] is not None for line in lines)
    snap = replay_lines(lines, Config.from_mapping({}), "2026-09-21T17:00:00Z", 4)
    assert snap["accepted"] == len(lines)
    assert snap["duplicates"] == 0
    assert set(snap["rejected"].values()) == {0}


def test_every_type_of_the_contract_is_present() -> None:
    cfg = _cfg(duration_s=30 * 86400, rate=0.04, users=200, bad_fraction=0.0)
    types: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    features: set[str] = set()
    actions: set[str] = set()
    surveys: Counter[tuple[str, str | None]] = Counter()
    accounts: set[str] = set()
    no_account = 0
    for rec in simulate(cfg):
        try:
            v = json.loads(rec["payload"])
        except (TypeError, ValueError):
            continue
        if not isinstance(v, dict) or "user_id" not in v:
            continue
        if "account_id" in v:
            accounts.add(v["account_id"])
        else:
            no_account += 1
        if rec["topic"] == SURVEY_TOPIC:
            surveys[(v["survey"], v.get("touchpoint"))] += 1
            continue
        types[v["type"]] += 1
        props: dict[str, Any] = v.get("props") or {}
        if v["type"] == "onboarding_step":
            steps[props["step"]] += 1
        elif v["type"] == "feature_used":
            features.add(props["feature"])
        elif v["type"] == "social_interaction":
            actions.add(props["action"])
    assert set(types) >= PRODUCT_TYPES, PRODUCT_TYPES - set(types)
    assert set(types) - PRODUCT_TYPES  # custom activity types too
    assert set(ONBOARDING_STEPS) <= set(steps)
    assert steps["welcome"] > steps["done"]
    assert steps["tour"] > steps["invite"]  # users skip the invite step
    assert len(features) >= 8 and features <= set(FEATURES)
    assert actions == set(SOCIAL_ACTIONS)
    assert {s for s, _ in surveys} == {"csat", "nps", "ces"}
    assert {t for _, t in surveys} == {"support", "checkout", "onboarding", "email", None}
    assert len(accounts) > 10 and no_account > 0


def test_event_ts_is_a_little_before_the_record_ts() -> None:
    lags: list[int] = []
    forms: Counter[str] = Counter()
    for rec in simulate(_cfg(bad_fraction=0.0, duration_s=6 * 3600)):
        v = json.loads(rec["payload"])
        ts = v["ts"]
        if isinstance(ts, int):
            forms["epoch_ms"] += 1
            lags.append(rec["ts"] - ts)
        else:
            forms["Z" if ts.endswith(("Z", "z")) else "offset"] += 1
    assert forms["Z"] > forms["epoch_ms"] > 0 and forms["offset"] > 0
    assert min(lags) >= 0
    assert max(lags) < 48 * 3600 * 1000
    lags.sort()
    assert lags[len(lags) // 2] < 2000  # mostly a small jitter


def test_dormant_users_stop() -> None:
    cfg = _cfg(duration_s=20 * 86400, rate=0.05, users=100, bad_fraction=0.0)
    last: dict[str, int] = {}
    for rec in simulate(cfg):
        last[rec["key"]] = rec["ts"]
    quiet = [u for u, t in last.items() if cfg.end_ms - t > 5 * 86400 * 1000]
    assert quiet  # some users went dormant days before the end


def test_values_and_lines() -> None:
    bad = '{"note":"\ud800"}'
    assert value_bytes(bad) == b'{"note":"\xed\xa0\x80"}'
    line = envelope_line({"topic": "t", "ts": 1, "payload": bad})
    assert line.endswith(b"\n") and json.loads(line)["payload"] == bad
    line.decode("utf-8")  # the file stays UTF-8
    assert all(isinstance(json.loads(c), str) for c in COMMENTS)


@pytest.mark.parametrize(
    "kw",
    [
        {"users": 0},
        {"rate": 0.0},
        {"duration_s": -1.0},
        {"partitions": 0},
        {"bad_fraction": 1.5},
        {"accounts": -1},
        {"misrouted_fraction": 2.0},
        {"max_records": -1},
        {"allowed_lateness_hours": 0.5},
    ],
)
def test_config_is_checked(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _cfg(**kw)


def test_no_accounts() -> None:
    sim = Simulator(_cfg(accounts=0, duration_s=600))
    assert sim.accounts == []
    assert all('"account_id"' not in (r["payload"] or "") for r in sim)
