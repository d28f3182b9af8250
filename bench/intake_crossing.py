"""What the intake's second crossing of Kafka costs (issue: raw topics -> `<app>-batches`).

usage: python bench/intake_crossing.py [--records 300000] [--users 60000]

On a fresh topic prefix of the local stack, sends a backlog of the simulate mix, then times
three readers of it in one process, one after the other, each to the last record:

1. `bare`: fetch the input topics and decode every value (the ceiling of bench/run.py);
2. `intake`: what the worker's intake stage does (agents/intake.py): fetch, encode each
   partition's records as micro-batches (agents/internal.encode_batch), produce them to a
   batches topic and wait for the acknowledgements;
3. `batches`: what the users stage pays to read them back: fetch the batches topic and decode
   the micro-batches (agents/internal.decode_batch), then decode every value.

The crossing costs (2) + (3) - (1): reported as CPU-seconds per record of this process (the
broker's share is not in it) and as wall time. Deletes the topics it created.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import uuid
from contextlib import suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from agents import admin  # noqa: E402
from agents.intake import chunks  # noqa: E402
from bench.loadgen import BOOT, produce_backlog, sim_config  # noqa: E402
from streams.codec import decode_batch, encode_batch  # noqa: E402
from streams.live import Batch  # noqa: E402
from streams.topics import TopicSettings, TopicSpec, topic_specs  # noqa: E402

PARTITIONS = 8
INPUTS = ("product-events", "survey-answers")


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def broker_cpu() -> float:
    """CPU-seconds used so far by the local Kafka broker processes (0 when none is seen)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if b"kafka.Kafka" not in (d / "cmdline").read_bytes():
                continue
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


async def read_all(topics: list[str], expect: int, on_batch: object) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOT, enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
    )  # fmt: skip
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        n = 0
        while n < expect:
            data = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            n += await on_batch(data)  # type: ignore[operator]
    finally:
        await consumer.stop()


async def main_async(records: int, users: int) -> dict[str, object]:
    prefix = f"crossing-{uuid.uuid4().hex[:8]}."
    specs = (
        *topic_specs(TopicSettings(prefix=prefix, input_partitions=PARTITIONS)),
        TopicSpec("batches", f"{prefix}batches", PARTITIONS, 1),
    )
    await admin.ensure_topics(BOOT, specs)
    sim = sim_config(records, users, days=7, seed=3, partitions=PARTITIONS)
    n, _, _ = await produce_backlog(prefix, sim)
    inputs = [prefix + t for t in INPUTS]
    decode = msgspec.json.decode
    out: dict[str, object] = {"records": n}

    async def bare(data: dict) -> int:  # type: ignore[type-arg]
        k = 0
        for msgs in data.values():
            for m in msgs:
                with suppress(msgspec.DecodeError, TypeError, UnicodeDecodeError):
                    decode(m.value)
            k += len(msgs)
        return k

    producer = AIOKafkaProducer(bootstrap_servers=BOOT, linger_ms=20,
                                max_batch_size=1024 * 1024, max_request_size=16 * 1024 * 1024)  # fmt: skip
    await producer.start()
    batches_sent = 0

    async def intake(data: dict) -> int:  # type: ignore[type-arg]
        nonlocal batches_sent
        acks = []
        k = 0
        for tp, msgs in data.items():
            base = tp.topic[len(prefix) :]
            recs = [(m.offset, m.timestamp, m.key, m.value) for m in msgs]
            for chunk in chunks(recs):
                value = encode_batch(Batch(base, tp.partition, chunk))
                acks.append(await producer.send(f"{prefix}batches", value, partition=tp.partition))
                batches_sent += 1
            k += len(msgs)
        await asyncio.gather(*acks)
        return k

    async def read_batches(data: dict) -> int:  # type: ignore[type-arg]
        k = 0
        for msgs in data.values():
            for m in msgs:
                batch = decode_batch(m.value)
                for r in batch.records:
                    with suppress(msgspec.DecodeError, TypeError, UnicodeDecodeError):
                        decode(r[3])
                k += 1
        return k

    try:
        for name, topics, fn, expect in (
            ("bare", inputs, bare, n),
            ("intake", inputs, intake, n),
        ):
            c0, b0, w0 = cpu(), broker_cpu(), time.perf_counter()
            await read_all(topics, expect, fn)
            out[name] = {"cpu_s": cpu() - c0, "broker_cpu_s": broker_cpu() - b0,
                         "wall_s": time.perf_counter() - w0}  # fmt: skip
        c0, b0, w0 = cpu(), broker_cpu(), time.perf_counter()
        await read_all([f"{prefix}batches"], batches_sent, read_batches)
        out["batches"] = {"cpu_s": cpu() - c0, "broker_cpu_s": broker_cpu() - b0,
                          "wall_s": time.perf_counter() - w0}  # fmt: skip
    finally:
        await producer.stop()
        await admin.delete_topics(BOOT, [s.name for s in specs])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--users", type=int, default=60_000)
    args = ap.parse_args()
    out = asyncio.run(main_async(args.records, args.users))
    n = int(out["records"])  # type: ignore[call-overload]
    print(json.dumps(out))
    rows = {k: v for k, v in out.items() if isinstance(v, dict)}
    for k, v in rows.items():
        print(
            f"{k:8} {v['cpu_s'] / n * 1e6:6.2f} µs CPU/record here, "
            f"{v['broker_cpu_s'] / n * 1e6:5.2f} in the broker, {n / v['wall_s']:>10,.0f} records/s"
        )
    for what, where in (("cpu_s", "here"), ("broker_cpu_s", "in the broker")):
        cross = rows["intake"][what] + rows["batches"][what] - rows["bare"][what]
        print(f"crossing {cross / n * 1e6:6.2f} µs CPU/record {where} (intake + batches - bare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
