"""The ceiling: a bare aiokafka consumer that only fetches the input records and decodes their
JSON values (msgspec; a value that does not decode is counted too), nothing else.

usage: python bench/peer_bare.py --prefix P --expect N   (prints one JSON line)

It assigns every partition of `<P>product-events` and `<P>survey-answers` itself (no consumer
group, no commits), reads from the beginning with `getmany`, and stops once it has seen N records.
`first`/`last` are the wall-clock instants the first and the N-th record were decoded;
`cpu_first`/`cpu_last` the process's CPU seconds then.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

TOPICS = ("product-events", "survey-answers")


async def consume(bootstrap: str, prefix: str, expect: int, partitions: int) -> dict[str, object]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    decode = msgspec.json.decode
    n = bad = 0
    first = last = cpu_first = cpu_last = 0.0
    try:
        tps = [TopicPartition(prefix + t, p) for t in TOPICS for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while n < expect:
            data = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            for msgs in data.values():
                if not first and msgs:
                    first, cpu_first = time.time(), time.process_time()
                for m in msgs:
                    try:
                        decode(m.value)
                    except (msgspec.DecodeError, TypeError, UnicodeDecodeError):
                        bad += 1
                n += len(msgs)
            last, cpu_last = time.time(), time.process_time()
    finally:
        await consumer.stop()
    return {"records": n, "undecodable": bad, "first": first, "last": last,
            "cpu_first": cpu_first, "cpu_last": cpu_last,
            "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--partitions", type=int, default=8, help="partitions of each input topic")
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    args = ap.parse_args()
    print(
        json.dumps(asyncio.run(consume(args.bootstrap, args.prefix, args.expect, args.partitions)))
    )


if __name__ == "__main__":
    main()
