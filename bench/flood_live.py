"""A flood of new users and event ids through one live worker on the local stack: the worker's
memory (RSS), its table directory and the number of /metrics series as the users pile up.

Every record is a new user (u0, u1, ...) with a new event id under one of --accounts accounts;
one in ten is a `feature_used` of a never-seen feature and one in ten a CSAT answer at a
never-seen touchpoint (the label allow-lists must fold them into "other"). Record timestamps
advance by --step-ms from --days ago, so the stream covers event time like a backfill and the
engine's expiry (docs/architecture.md, "State and its retention") has something to expire.

Prints one line per checkpoint: records sent and counted, users and customers held (from
/metrics), worker RSS, data directory size, /metrics series; and the growth per 1M users.
tests/unit/test_flood.py is the CI version (10M records through the engine, no Kafka).

usage: python bench/flood_live.py [--records 2000000] [--accounts 1000] [--step-ms 17280]
Needs `make stack-up` (plain; KAFKA_BOOTSTRAP / REDIS_URL to point elsewhere). Creates topics
under a fresh prefix and deletes them afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import admin
from streams.partitioner import kafka_partition
from streams.timeutil import format_instant
from streams.topics import TopicSettings, topic_specs
from tests.integration.live_harness import WorkerProc, wait_ready

BOOT = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PARTITIONS = 8


def record(n: int, rts: int, accounts: int) -> tuple[str, bytes, bytes]:
    kind = n % 10
    a = n % accounts
    if kind == 8:
        v = (b'{"event_id":"e%d","type":"feature_used","user_id":"u%d","account_id":"a%d",'
             b'"ts":%d,"props":{"feature":"feat-%d"}}') % (n, n, a, rts, n)  # fmt: skip
        return "product-events", b"u%d" % n, v
    if kind == 9:
        v = (b'{"response_id":"r%d","survey":"csat","score":%d,"user_id":"u%d","account_id":'
             b'"a%d","ts":%d,"touchpoint":"tp-%d"}') % (n, 1 + n % 5, n, a, rts, n)  # fmt: skip
        return "survey-answers", b"u%d" % n, v
    v = b'{"event_id":"e%d","type":"flood_visit","user_id":"u%d","account_id":"a%d","ts":%d}' % (
        n, n, a, rts,
    )  # fmt: skip
    return "product-events", b"u%d" % n, v


async def produce(prefix: str, start: int, count: int, t0: int, step: int, accounts: int) -> None:
    from aiokafka import AIOKafkaProducer

    prod = AIOKafkaProducer(bootstrap_servers=BOOT, linger_ms=20, acks=1,
                            max_batch_size=512 * 1024)  # fmt: skip
    await prod.start()
    try:
        for n in range(start, start + count):
            rts = t0 + n * step
            topic, key, value = record(n, rts, accounts)
            await prod.send(prefix + topic, value=value, key=key, timestamp_ms=rts,
                            partition=kafka_partition(key, PARTITIONS))  # fmt: skip
        await prod.flush()
    finally:
        await prod.stop()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def du_kb(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) // 1024


def scrape(w: WorkerProc) -> tuple[int, int, float]:
    """(/metrics series, label values taken from records, records counted)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = w.get("/metrics", timeout=60)
    assert status == 200, text
    series = leaked = 0
    counted = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            series += 1
            leaked += any(v.startswith(("feat-", "tp-")) for v in s.labels.values())
            if s.name.startswith(("engagement_records_accepted", "engagement_records_duplicate",
                                  "engagement_records_rejected")) and s.name.endswith("_total"):  # fmt: skip
                counted += s.value
    return series, leaked, counted


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--step-ms", type=int, default=17_280, help="event time between records")
    ap.add_argument("--checkpoints", type=int, default=10)
    args = ap.parse_args()
    prefix = f"bench.flood-{uuid.uuid4().hex[:6]}."
    t0 = int(time.time() * 1000) - args.records * args.step_ms
    asyncio.run(admin.ensure_topics(BOOT, topic_specs(TopicSettings(prefix=prefix))))
    tmp = Path(tempfile.mkdtemp(prefix="flood-"))
    env = dict(os.environ, KAFKA_BOOTSTRAP=BOOT, REDIS_URL=REDIS, ENGAGEMENT_TOPIC_PREFIX=prefix,
               ENGAGEMENT_INPUT_PARTITIONS=str(PARTITIONS), ENGAGEMENT_DATA_DIR=str(tmp / "data"),
               ENGAGEMENT_APP_ID=prefix.strip(".").replace(".", "-"),
               ENGAGEMENT_LOG_LEVEL="warning")  # fmt: skip
    w = WorkerProc("flood", env, tmp / "worker.log").start()
    print(f"prefix {prefix}  worker log {w.log}", file=sys.stderr)
    print(
        f"{'sent':>10} {'counted':>10} {'RSS MB':>8} {'data MB':>8} {'series':>7} {'leaked':>6} {'s':>6}"
    )
    try:
        wait_ready([w], timeout=180)
        assert w.proc is not None
        chunk = args.records // args.checkpoints
        first: tuple[int, int] | None = None
        start = time.monotonic()
        for k in range(args.checkpoints):
            asyncio.run(produce(prefix, k * chunk, chunk, t0, args.step_ms, args.accounts))
            sent = (k + 1) * chunk
            while True:  # wait until the worker has counted what was sent
                series, leaked, counted = scrape(w)
                if counted >= sent:
                    break
                time.sleep(2)
            rss = rss_kb(w.proc.pid)
            if first is None:
                first = (sent, rss)
            print(f"{sent:>10,} {int(counted):>10,} {rss / 1024:>8.0f} {du_kb(tmp / 'data') / 1024:>8.0f} "
                  f"{series:>7} {leaked:>6} {time.monotonic() - start:>6.0f}", flush=True)  # fmt: skip
        if first is not None and sent > first[0]:
            per_m = (rss_kb(w.proc.pid) - first[1]) / 1024 / ((sent - first[0]) / 1e6)
            print(f"RSS growth: {per_m:,.0f} MB per 1M new users "
                  f"(event time covered: {format_instant(t0 * 1_000_000)} .. now)")  # fmt: skip
    finally:
        w.stop()

        async def cleanup() -> None:
            names = [n for n in await admin.list_topics(BOOT) if n.startswith(prefix)]
            await admin.delete_topics(BOOT, names)

        asyncio.run(cleanup())
    return 0


if __name__ == "__main__":
    sys.exit(main())
