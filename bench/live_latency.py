"""One live worker on the local stack: sustained events/s and the delay from a record's
timestamp to its effect in /snapshot (p50, p99).

1. throughput: produce `--backlog` simulated records first, start a worker, time until
   /snapshot counts them all (events/s of the whole pipeline: intake, users, accounts).
2. delay: produce records stamped with the send time at `--rate` records/s for `--seconds`, while
   polling /snapshot every BENCH_POLL_SECONDS (0.25 s); record k's effect is the first poll whose
   accepted + duplicates + rejected count reaches k (all on one producer, so records reach the
   partitions in about send order; an approximation across partitions).

usage: python bench/live_latency.py [--backlog 100000] [--rate 500] [--seconds 20]
Needs `make stack-up`. Creates topics under a fresh prefix and deletes them afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import admin
from streams.simulate import SimConfig, kafka_partition, simulate
from streams.topics import TopicSettings, topic_specs
from tests.integration.live_harness import WorkerProc, run_cli, wait_ready, write_jsonl

POLL = float(os.environ.get("BENCH_POLL_SECONDS", "0.25"))
BOOT = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def counted(w: WorkerProc) -> int:
    status, body = w.get("/snapshot")
    if status != 200:
        return -1
    return int(body["accepted"] + body["duplicates"] + sum(body["rejected"].values()))


async def paced(prefix: str, rate: float, seconds: float, w: WorkerProc, base: int) -> list[float]:
    from aiokafka import AIOKafkaProducer

    prod = AIOKafkaProducer(bootstrap_servers=BOOT, linger_ms=0, acks=1)
    await prod.start()
    sent: list[float] = []
    effects: list[float] = []
    stop = False

    async def poll() -> None:
        while not stop or len(effects) < len(sent):
            n = await asyncio.to_thread(counted, w) - base
            now = time.time()
            while len(effects) < min(n, len(sent)):
                effects.append(now)
            await asyncio.sleep(POLL)
            if stop and time.time() - sent[-1] > 30:
                break

    poller = asyncio.create_task(poll())
    total = int(rate * seconds)
    t0 = time.time()
    for k in range(total):
        target = t0 + k / rate
        await asyncio.sleep(max(0.0, target - time.time()))
        now_ms = int(time.time() * 1000)
        user = f"lat-{k % 500}"
        value = json.dumps({"event_id": f"l{k}", "type": "page_view", "user_id": user,
                            "ts": now_ms, "session_id": "s"}).encode()  # fmt: skip
        await prod.send(prefix + "product-events", value, key=user.encode(), timestamp_ms=now_ms,
                        partition=kafka_partition(user.encode(), 8))  # fmt: skip
        sent.append(now_ms / 1000)
    await prod.flush()
    stop = True
    await poller
    await prod.stop()
    return [e - s for s, e in zip(sent, effects, strict=False)]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    prefix = f"bench.{uuid.uuid4().hex[:6]}."
    specs = topic_specs(TopicSettings(prefix=prefix))
    asyncio.run(admin.ensure_topics(BOOT, specs))
    tmp = Path(f"/tmp/{prefix}")
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "ENGAGEMENT_TOPIC_PREFIX": prefix, "ENGAGEMENT_APP_ID": "bench",
           "ENGAGEMENT_DATA_DIR": str(tmp / "w"), "KAFKA_BOOTSTRAP": BOOT}  # fmt: skip
    days = 7
    start = int(time.time() * 1000) - days * 86_400_000
    sim = SimConfig(start_ms=start, duration_s=days * 86400, users=20_000,
                    rate=args.backlog / (days * 86400), seed=9, partitions=8)  # fmt: skip
    envs = list(simulate(sim))
    write_jsonl(envs, tmp / "backlog.jsonl")
    r = run_cli("load", str(tmp / "backlog.jsonl"), env=env)
    assert r.returncode == 0, r.stderr
    w = WorkerProc("bench", env, tmp / "worker.log").start()
    try:
        wait_ready([w])
        t0 = time.time()
        while counted(w) < len(envs):
            time.sleep(0.5)
        secs = time.time() - t0
        print(
            f"throughput: {len(envs):,} records in {secs:.1f}s = {len(envs) / secs:,.0f} records/s"
        )
        delays = asyncio.run(paced(prefix, args.rate, args.seconds, w, len(envs)))
        delays.sort()
        p50 = statistics.median(delays)
        p99 = delays[int(0.99 * (len(delays) - 1))]
        print(f"delay at {args.rate:g} records/s over {len(delays)} records: "
              f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")  # fmt: skip
    finally:
        w.stop()
        names = [s.name for s in specs]
        asyncio.run(admin.delete_topics(BOOT, names))


if __name__ == "__main__":
    main()
