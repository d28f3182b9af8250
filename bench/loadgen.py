"""Load generator: the realistic record mix of `engagement simulate` into Kafka, as fast as possible
or at a fixed rate.

Records come from `streams.simulate` (the same generator as `engagement simulate`: sign-ups,
sessions, features, purchases, tickets, surveys, subscriptions, 1% bad records and duplicates), for
`--users` users. Each record goes to the partition Kafka's default partitioner picks for its key
(murmur2, `streams.partitioner`), so the keys spread over the topic's partitions exactly as a
real producer would put them, and a user stays in one partition. Records are appended to one
aiokafka `BatchBuilder` per partition and sent with `send_batch` (acks=1, no compression): the
per-record cost of `producer.send` would otherwise bound the generator well below the consumers.

- as fast as possible (default): the stream's record timestamps span `--days` of history ending
  now, like a backfill;
- `--rate R`: R records per second of wall time, each stamped with the instant it is due (its
  record timestamp is its send time, within the 10 ms pacing tick), for `--seconds` seconds.
  The records are generated and batched before the first is due (a lead of a few seconds), so
  the generator costs the machine little CPU while it sends.

usage:
  python bench/loadgen.py --prefix bench-1. --records 200000 --users 20000
  python bench/loadgen.py --prefix bench-1. --rate 2000 --seconds 30 --users 500

The topics must exist (`engagement topics --prefix ...`). Prints one JSON line to stdout:
records sent, seconds, records/s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from streams.partitioner import kafka_partition  # noqa: E402
from streams.simulate import SimConfig, Simulator, value_bytes  # noqa: E402

BOOT = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
TICK = 0.010  # pacing: records due within the next tick are sent together
BATCH_BYTES = 1024 * 1024


@dataclass
class Sent:
    """What a paced run sent: per record, (topic, partition, offset, record timestamp in ms)."""

    records: int = 0
    seconds: float = 0.0
    marks: list[tuple[str, int, int, int]] = field(default_factory=list)
    # records handed to the producer more than 100 ms / 1 s after their due instant (the
    # generator fell behind: their delays include that wait), and the latest of them (ms)
    late_100ms: int = 0
    late_1s: int = 0
    latest_ms: int = 0
    # per second of sending (from the first due instant): how far behind its schedule the
    # generator handed over its latest record (ms), to tell its stalls from the worker's
    behind_by_second: dict[int, int] = field(default_factory=dict)


def sim_config(
    records: int, users: int, days: float, seed: int, partitions: int, end_ms: int | None = None
) -> SimConfig:
    """`records` records over `days` of record time ending at `end_ms` (default now)."""
    end = int(time.time() * 1000) if end_ms is None else end_ms
    duration = days * 86400
    return SimConfig(start_ms=end - int(duration * 1000), duration_s=duration, users=users,
                     rate=records / duration, seed=seed, partitions=partitions,
                     max_records=records)  # fmt: skip


async def _producer(bootstrap: str) -> Any:
    from aiokafka import AIOKafkaProducer

    prod = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=5,
        max_batch_size=BATCH_BYTES,
        max_request_size=4 * BATCH_BYTES,
        request_timeout_ms=60_000,
    )
    await prod.start()
    return prod


class _Batches:
    """One open BatchBuilder per (topic, partition); full or flushed batches go to send_batch."""

    def __init__(self, prod: Any, prefix: str, track: bool) -> None:
        self.prod = prod
        self.prefix = prefix
        self.open: dict[tuple[str, int], tuple[Any, list[int]]] = {}
        self.pending: list[tuple[asyncio.Future[Any], str, int, list[int]]] = []
        self.track = track
        self.marks: list[tuple[str, int, int, int]] = []
        self.parts: dict[str, int] = {}

    async def partitions(self, topic: str) -> int:
        n = self.parts.get(topic)
        if n is None:
            n = self.parts[topic] = len(await self.prod.partitions_for(self.prefix + topic))
        return n

    async def add(self, topic: str, key: bytes | None, value: bytes | None, ts: int) -> None:
        n = self.parts.get(topic) or await self.partitions(topic)
        part = kafka_partition(key, n) if key is not None else ts % n
        slot = self.open.get((topic, part))
        if slot is None:
            slot = self.open[(topic, part)] = (self.prod.create_batch(), [])
        batch, stamps = slot
        if batch.append(key=key, value=value, timestamp=ts) is None:
            await self._send(topic, part)
            batch, stamps = self.open[(topic, part)] = (self.prod.create_batch(), [])
            if batch.append(key=key, value=value, timestamp=ts) is None:
                raise ValueError(f"a record of {len(value or b'')} bytes fits no batch")
        stamps.append(ts)

    async def _send(self, topic: str, part: int) -> None:
        batch, stamps = self.open.pop((topic, part))
        batch.close()
        fut = await self.prod.send_batch(batch, self.prefix + topic, partition=part)
        self.pending.append((fut, topic, part, stamps))

    async def flush(self) -> None:
        for topic, part in list(self.open):
            await self._send(topic, part)
        pending, self.pending = self.pending, []
        for fut, topic, part, stamps in pending:
            meta = await fut
            if self.track:
                base = meta.offset
                self.marks.extend((topic, part, base + i, ts) for i, ts in enumerate(stamps))


async def produce_backlog(
    prefix: str, cfg: SimConfig, bootstrap: str = BOOT
) -> tuple[int, float, dict[str, int]]:
    """Send the whole simulated stream as fast as possible: (records, seconds, Simulator counts)."""
    prod = await _producer(bootstrap)
    try:
        sink = _Batches(prod, prefix, track=False)
        sim = Simulator(cfg)
        for topic in ("product-events", "survey-answers"):
            await sink.partitions(topic)
        t0 = time.perf_counter()
        n = 0
        for env in sim:
            key = env["key"]
            payload = env["payload"]
            await sink.add(
                env["topic"],
                None if key is None else key.encode("utf-8", "surrogatepass"),
                None if payload is None else value_bytes(payload),
                env["ts"],
            )
            n += 1
            if not n & 0x3FFF:
                await sink.flush()
        await sink.flush()
        await prod.flush()
        return n, time.perf_counter() - t0, sim.counts
    finally:
        await prod.stop()


# ticks[i]: {(topic, partition): [(record batch, its records' timestamps), ...]} of the records
# due in tick i (TICK) after the start
Ticks = list[dict[tuple[str, int], list[tuple[Any, list[int]]]]]


def build_ticks(cfg: SimConfig, parts: dict[str, int], limit: int | None = None) -> Ticks:
    """The records of `cfg` (the first `limit`), in record batches per tick and partition.
    Python's cyclic collector is off meanwhile: its full collections over the growing lists of
    batches took most of the time (nothing built holds cycles)."""
    from aiokafka.producer.message_accumulator import BatchBuilder

    tick_ms = int(TICK * 1000)
    ticks: Ticks = []
    collecting = gc.isenabled()
    gc.disable()
    try:
        for n, env in enumerate(Simulator(cfg)):
            if limit is not None and n >= limit:
                break
            topic, key, payload, ts = env["topic"], env["key"], env["payload"], env["ts"]
            kb = None if key is None else key.encode("utf-8", "surrogatepass")
            n_parts = parts[topic]
            part = kafka_partition(kb, n_parts) if kb is not None else ts % n_parts
            i = (ts - cfg.start_ms) // tick_ms
            while len(ticks) <= i:
                ticks.append({})
            slots = ticks[i].setdefault((topic, part), [])
            value = None if payload is None else value_bytes(payload)
            if not slots or slots[-1][0].append(key=kb, value=value, timestamp=ts) is None:
                slots.append((BatchBuilder(BATCH_BYTES, 0), []))
                if slots[-1][0].append(key=kb, value=value, timestamp=ts) is None:
                    raise ValueError(f"a record of {len(value or b'')} bytes fits no batch")
            slots[-1][1].append(ts)
    finally:
        if collecting:
            gc.enable()
    return ticks


def build_seconds(cfg: SimConfig, parts: dict[str, int], total: int, sample: int = 20_000) -> float:
    """How long building `total` records of `cfg` takes here: the generator's set-up (it grows
    with the users) plus `total` at the pace of a throwaway build of its first `sample`."""
    t0 = time.perf_counter()
    build_ticks(cfg, parts, limit=1)
    setup = time.perf_counter() - t0
    t1 = time.perf_counter()
    build_ticks(cfg, parts, limit=sample)
    per_record = max(time.perf_counter() - t1 - setup, 1e-9) / sample
    return setup + total * per_record


async def produce_paced(
    prefix: str, rate: float, seconds: float, users: int, seed: int, partitions: int,
    bootstrap: str = BOOT, stop_after: float | None = None,
    on_start: Any = None,
) -> Sent:  # fmt: skip
    """`rate` records/s for `seconds`, each stamped with its due instant (its send time).

    Every record is generated and appended to its record batch *before* the first is due, one
    batch per (topic, partition) per 10 ms tick: while they are sent, the generator only hands
    ready batches to the producer on time. It shares the machine with the worker and the
    broker; generating 20,000 records/s on the way took half a core from them and made its own
    stalls part of the delays measured. `on_start()` is called right before the first tick
    (the caller starts its measurements there)."""

    prod = await _producer(bootstrap)
    try:
        sink = _Batches(prod, prefix, track=True)
        for topic in ("product-events", "survey-answers"):
            await sink.partitions(topic)
        total = int(rate * seconds)
        probe = SimConfig(start_ms=int(time.time() * 1000), duration_s=seconds, users=users,
                          rate=rate, seed=seed, partitions=partitions)  # fmt: skip
        # building the records must end before the first is due: 1.6 times the time measured
        # on a sample (within 10-30% of the build's time on a quiet machine), and 3 s; with
        # 1.3 times and 2 s, a build sharing the cores with a worker busy after its drain ended
        # up to 2.4 s late, and the first records' delays counted that
        lead_ms = int((3.0 + 1.6 * build_seconds(probe, sink.parts, total)) * 1000)
        start_ms = int(time.time() * 1000) + lead_ms
        cfg = SimConfig(start_ms=start_ms, duration_s=seconds, users=users, rate=rate,
                        seed=seed, partitions=partitions)  # fmt: skip
        tick_ms = int(TICK * 1000)
        ticks = build_ticks(cfg, sink.parts)
        built_late = time.time() * 1000 - start_ms
        if built_late > 0:
            print(f"loadgen: the records were built {built_late / 1000:.1f} s after the first "
                  "was due", file=sys.stderr)  # fmt: skip
        # the million objects built stay for the whole phase: frozen, the cyclic collector
        # leaves them out, where its full collections over them held the sender for ~0.5 s
        # (the generator was that late at the 10th and 31st second of a minute at 20,000/s)
        gc.freeze()
        await asyncio.sleep(max(0.0, start_ms / 1000 - time.time()))
        if on_start is not None:
            on_start()
        t0 = time.time()
        n_sent = 0
        late_100ms = late_1s = latest = 0
        by_second: dict[int, int] = {}
        for i, tick in enumerate(ticks):
            if stop_after is not None and time.time() - t0 > stop_after:
                break
            await asyncio.sleep(max(0.0, (start_ms + i * tick_ms) / 1000 - time.time()))
            for (topic, part), slots in tick.items():
                for batch, stamps in slots:
                    now_ms = int(time.time() * 1000)
                    for ts in stamps:
                        behind = now_ms - ts
                        sec = (ts - start_ms) // 1000
                        if behind > by_second.get(sec, 0):
                            by_second[sec] = behind
                        if behind > 100:
                            late_100ms += 1
                            late_1s += behind > 1000
                            latest = max(latest, behind)
                    batch.close()
                    fut = await prod.send_batch(batch, prefix + topic, partition=part)
                    sink.pending.append((fut, topic, part, stamps))
                    n_sent += len(stamps)
        seconds_sent = time.time() - t0
        await sink.flush()  # the offsets of what was sent (the acknowledgements)
        await prod.flush()
        return Sent(n_sent, seconds_sent, sink.marks, late_100ms, late_1s, latest, by_second)
    finally:
        gc.unfreeze()
        await prod.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--prefix", required=True, help="topic prefix (the topics must exist)")
    ap.add_argument("--bootstrap", default=BOOT)
    ap.add_argument("--records", type=int, default=200_000, help="backlog records (200,000)")
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--days", type=float, default=7.0, help="record time covered by a backlog")
    ap.add_argument("--rate", type=float, help="records/s of wall time (default: flat out)")
    ap.add_argument("--seconds", type=float, default=30.0, help="how long at --rate")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if args.rate:
        sent = asyncio.run(produce_paced(args.prefix, args.rate, args.seconds, args.users,
                                         args.seed, args.partitions, args.bootstrap))  # fmt: skip
        n, secs = sent.records, sent.seconds
    else:
        cfg = sim_config(args.records, args.users, args.days, args.seed, args.partitions)
        n, secs, _ = asyncio.run(produce_backlog(args.prefix, cfg, args.bootstrap))
    print(json.dumps({"records": n, "seconds": round(secs, 3), "per_s": round(n / secs)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
