"""The producer SDK and the CLI on the real stack: `engagement emit` puts a record on the
user's partition with its key and timestamp, the SDK's SyncProducer flushes at interpreter exit,
and `engagement snapshot` prints what a real worker serves (equal to a replay of the records)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams import sdk
from streams.config import Config
from streams.partitioner import kafka_partition
from streams.records import decode_product, decode_survey
from streams.replay import replay_lines
from streams.timeutil import format_instant
from streams.topics import DEFAULT_INPUT_PARTITIONS
from tests.integration.conftest import Stack
from tests.integration.live_harness import (
    REPO,
    WorkerProc,
    run_cli,
    total_records,
    wait_for_snapshot,
    wait_ready,
)

pytestmark = pytest.mark.integration

T = "2026-11-20T12:00:00Z"
T_MS = 1_795_176_000_000
SENT = re.compile(r"sent to (\S+) partition (\d+) offset (\d+)")


def _env(stack: Stack, prefix: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "ENGAGEMENT_TOPIC_PREFIX": prefix,
        **extra,
    }


async def _read(bootstrap: str, topic: str, partition: int, offset: int) -> Any:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        return await asyncio.wait_for(consumer.getone(tp), 30)
    finally:
        await consumer.stop()


async def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(DEFAULT_INPUT_PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


def test_emit_lands_on_the_users_partition_with_key_and_timestamp(
    stack: Stack, topics: dict[str, str], topic_prefix: str
) -> None:
    env = _env(stack, topic_prefix)
    r = run_cli(
        "emit", "purchase", "--user", "u-emit-7", "--account", "acme", "--id", "e-77",
        "--prop", "order_id=o-1", "--prop", "amount=19.5",
        "--ts", "2026-11-20T11:59:00.125Z", "--record-ts", T, env=env, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    m = SENT.search(r.stdout.decode())
    assert m, r.stdout.decode()
    topic, partition, offset = m[1], int(m[2]), int(m[3])
    assert topic == topics["product-events"]
    # the partition Kafka's default partitioner gives the user id, where the worker owns the user
    assert partition == kafka_partition(b"u-emit-7", DEFAULT_INPUT_PARTITIONS)
    msg = asyncio.run(_read(stack.kafka_bootstrap, topic, partition, offset))
    assert msg.key == b"u-emit-7"
    assert msg.timestamp == T_MS
    # a worker-free consume: the value passes the engine's validation, as sent
    ev, _ = decode_product(msg.value)
    assert (ev.event_id, ev.type, ev.user_id, ev.account_id) == (
        "e-77",
        "purchase",
        "u-emit-7",
        "acme",
    )
    assert ev.ts == "2026-11-20T11:59:00.125Z" and ev.props == {"order_id": "o-1", "amount": 19.5}

    r = run_cli("emit", "csat", "--user", "u-emit-7", "--score", "5", "--touchpoint", "support",
                "--record-ts", T, "--ts", T, env=env, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    m = SENT.search(r.stdout.decode())
    assert m and m[1] == topics["survey-answers"] and int(m[2]) == partition  # co-partitioned
    msg = asyncio.run(_read(stack.kafka_bootstrap, m[1], int(m[2]), int(m[3])))
    ans, _ = decode_survey(msg.value)
    assert (ans.survey, ans.score, ans.touchpoint, msg.key) == ("csat", 5, "support", b"u-emit-7")


def test_emit_sends_nothing_when_the_engine_would_reject(
    stack: Stack, topics: dict[str, str], topic_prefix: str
) -> None:
    env = _env(stack, topic_prefix)
    r = run_cli("emit", "nps", "--user", "u-1", "--score", "11", env=env, timeout=60)
    assert r.returncode == 2
    assert "nps score must be an integer 0-10" in r.stderr.decode()
    r = run_cli("emit", "signup", "--user", "u-1", "--prefix", topic_prefix + "missing.",
                env=env, timeout=90)  # fmt: skip
    assert r.returncode == 1 and "does not exist" in r.stderr.decode()
    ends = asyncio.run(_end_offsets(stack.kafka_bootstrap, topics["survey-answers"]))
    assert sum(ends.values()) == 0


SCRIPT = """
import sys
from engagement_cli.producer import SyncProducer
from streams import sdk
t = int(sys.argv[3])
p = SyncProducer(sys.argv[1], prefix=sys.argv[2])
for i in range(200):
    p.send(sdk.key_action(f"u-{i % 37}", event_id=f"e-{i}", ts=t, record_ts=t))
# no close(), no flush(): the atexit hook must deliver every record
"""


def test_sync_producer_flushes_at_interpreter_exit(
    stack: Stack, topics: dict[str, str], topic_prefix: str
) -> None:
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, stack.kafka_bootstrap, topic_prefix, str(T_MS)],
        cwd=REPO, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    ends = asyncio.run(_end_offsets(stack.kafka_bootstrap, topics["product-events"]))
    assert sum(ends.values()) == 200
    per_partition: dict[int, int] = {}
    for i in range(200):
        p = kafka_partition(f"u-{i % 37}".encode(), DEFAULT_INPUT_PARTITIONS)
        per_partition[p] = per_partition.get(p, 0) + 1
    assert {p: n for p, n in ends.items() if n} == per_partition


def _records() -> list[sdk.Record]:
    """A small day of SDK records (every family), record timestamps just after their ts."""
    recs: list[sdk.Record] = []
    for i in range(12):
        u, acct = f"u-{i}", f"acct-{i % 3}"
        t = T_MS - (12 - i) * 600_000
        kw: dict[str, Any] = {"account_id": acct, "record_ts": t + 500}
        recs += [
            sdk.signup(u, ts=t, event_id=f"s-{i}", **kw),
            sdk.page_view(u, f"sess-{i}", path="/", ts=t + 1000, event_id=f"pv-{i}", **kw),
            sdk.feature_used(u, "export", ts=t + 2000, event_id=f"f-{i}", **kw),
            sdk.nps(u, i % 11, ts=t + 3000, response_id=f"r-{i}", touchpoint="support", **kw),
        ]
        if i % 4 == 0:
            recs.append(sdk.purchase(u, f"o-{i}", 10.0 + i, ts=t + 4000, event_id=f"o-{i}", **kw))
    recs.append(recs[0])  # sent twice: a duplicate
    return recs


def test_snapshot_command_prints_what_a_real_worker_serves(
    stack: Stack, topics: dict[str, str], topic_prefix: str, redis_db: int, tmp_path: Path
) -> None:
    from engagement_cli.producer import SyncProducer

    env = _env(
        stack, topic_prefix,
        REDIS_URL=f"redis://{stack.redis_host}:{stack.redis_port}/{redis_db}",
        ENGAGEMENT_APP_ID=topic_prefix.strip(".").replace(".", "-") + "-app",
        ENGAGEMENT_CLOCK=T, ENGAGEMENT_DATA_DIR=str(tmp_path / "w1"),
    )  # fmt: skip
    worker = WorkerProc("w1", env, tmp_path / "w1.log").start()
    try:
        wait_ready([worker])
        recs = _records()
        with SyncProducer(stack.kafka_bootstrap, prefix=topic_prefix) as producer:
            for rec in recs:
                producer.send(rec)
        live = wait_for_snapshot([worker], T, len(recs), timeout=120)
        lines = [json.dumps(r.envelope()).encode() for r in recs]
        expected = replay_lines(lines, Config(), T)
        assert total_records(expected) == len(recs) and expected["duplicates"] == 1

        cli_env = {**env, "ENGAGEMENT_WORKER_URL": worker.url}
        r = run_cli("snapshot", "--json", "--as-of", T, env=cli_env, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        printed = json.loads(r.stdout)
        assert printed.pop("coverage")
        assert printed == expected
        live.pop("coverage")
        assert live == expected

        r = run_cli("snapshot", "--url", worker.url, env=env, timeout=60)  # as of the clock, T
        assert r.returncode == 0, r.stderr.decode()
        table = [ln.split() for ln in r.stdout.decode().splitlines()]
        assert table[0][:4] == ["Snapshot", "as", "of", T]
        assert ["dau", str(expected["dau"])] in table and expected["dau"] == 12
        assert ["duplicates", "1"] in table

        r = run_cli("snapshot", "--as-of", "2001-01-01T00:00:00Z", env=cli_env, timeout=60)
        assert r.returncode == 1
        assert "HTTP 422" in r.stderr.decode() and "later instant" in r.stderr.decode()
    finally:
        worker.stop()
    r = run_cli("snapshot", "--url", worker.url, env=env, timeout=60)
    assert r.returncode == 1 and "connection refused" in r.stderr.decode()


def test_snapshot_wait_with_a_librdkafka_producer(
    stack: Stack, topics: dict[str, str], topic_prefix: str, redis_db: int, tmp_path: Path
) -> None:
    """Records produced by librdkafka (confluent-kafka) with its default partitioner
    (consistent_random, not Kafka's murmur2): most land in a partition that does not own their
    user and are forwarded. `engagement snapshot --wait` returns only once every one is counted
    (it returned after a few seconds with a quarter counted: a source partition looked covered
    as soon as any forwarded record near its end was applied), and the counts equal replay;
    /metrics counts the forwarded records."""
    from confluent_kafka import Producer

    from tests.integration.live_harness import make_dataset, metric_sums, series, write_jsonl

    # Two days of event time: nothing is old enough to expire. (Over weeks, records that all
    # take a detour through another partition in a backfill may reach their owner after it
    # forgot what the contract lets it forget, decision 35; that is not what this test is for.)
    envs, last_ms = make_dataset(
        60_000, users=3000, seed=9, partitions=DEFAULT_INPUT_PARTITIONS, days=2
    )
    as_of = format_instant((last_ms + 60_000) * 1_000_000)
    env = _env(
        stack, topic_prefix,
        REDIS_URL=f"redis://{stack.redis_host}:{stack.redis_port}/{redis_db}",
        ENGAGEMENT_APP_ID=topic_prefix.strip(".").replace(".", "-") + "-app",
        ENGAGEMENT_CLOCK=as_of, ENGAGEMENT_DATA_DIR=str(tmp_path / "w1"),
    )  # fmt: skip
    worker = WorkerProc("w1", env, tmp_path / "w1.log")
    try:
        # every record is in Kafka before the worker starts, and `snapshot --wait` starts with
        # it: its polls see the worker while the forwarded records are on their way
        producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 20})
        for e in envs:
            producer.produce(
                topic_prefix + e["topic"],
                value=e["payload"].encode("utf-8", "surrogatepass") if e["payload"] else None,
                key=e["key"].encode() if e["key"] is not None else None,
                timestamp=e["ts"],
            )
            producer.poll(0)
        assert producer.flush(60) == 0
        worker.start()
        cli_env = {**env, "ENGAGEMENT_WORKER_URL": worker.url}
        r = run_cli(
            "snapshot", "--wait", "300", "--json", "--as-of", as_of, env=cli_env, timeout=320
        )
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        printed = json.loads(r.stdout)
        printed.pop("coverage")
        path = tmp_path / "all.jsonl"
        write_jsonl(envs, path)
        with open(path, "rb") as fh:
            expected = replay_lines(fh, Config(), as_of)
        assert total_records(expected) == len(envs)
        assert total_records(printed) == len(envs)
        assert printed == expected
        sums = metric_sums([worker])
        forwarded = series(sums, "engagement_records_forwarded_total")
        assert forwarded > len(envs) / 2, forwarded
    finally:
        worker.stop()
