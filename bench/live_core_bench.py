"""Micro-benchmark of the live rules in-process: `streams.live` (Python) against
`streams.native_live` (the compiled core), no Kafka.

The simulate mix (streams.simulate: bad records, duplicates, misrouted keys) is cut into
micro-batches per source topic-partition and applied to every user partition; the forwards go
to their owner's queue and the account facts to the account partitions, each message with its
offset (expiry sweeps included), as the worker does. Prints records/s for each engine (wall
clock and CPU time of this process) and checks both ended with the same counters and state
sizes.

usage:
  python bench/live_core_bench.py                          # 300,000 records, 60,000 users
  python bench/live_core_bench.py --records 100000 --engines native
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from streams.config import Config  # noqa: E402
from streams.live import Batch, LiveAccountPartition, LiveUserPartition  # noqa: E402
from streams.simulate import SimConfig, Simulator  # noqa: E402

START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z: fixed, so runs compare


def make_batches(records: int, users: int, days: float, partitions: int, size: int) -> list[Batch]:
    duration_s = days * 86400
    sim = SimConfig(
        start_ms=START_MS,
        duration_s=duration_s,
        users=users,
        rate=records / duration_s,
        seed=1,
        partitions=partitions,
        max_records=records,
    )
    per: dict[tuple[str, int], list[Any]] = {}
    for e in Simulator(sim):
        value = None if e["payload"] is None else e["payload"].encode("utf-8", "surrogatepass")
        key = None if e["key"] is None else e["key"].encode("utf-8", "surrogatepass")
        recs = per.setdefault((e["topic"], e["partition"]), [])
        recs.append((len(recs), e["ts"], key, value))
    # the sources' micro-batches, interleaved in record time (as the intake reads them)
    out = []
    for (topic, p), recs in per.items():
        for i in range(0, len(recs), size):
            out.append(Batch(topic, p, recs[i : i + size]))
    out.sort(key=lambda b: b.records[0][1])
    return out


def run(engine: str, batches: list[Batch], partitions: int) -> dict[str, Any]:
    cfg = Config()
    n = partitions
    if engine == "native":
        from streams.native_live import NativeLiveAccountPartition as A
        from streams.native_live import NativeLiveUserPartition as U
    else:
        U, A = LiveUserPartition, LiveAccountPartition  # type: ignore[assignment]
    users = [U(cfg, p, n, n) for p in range(n)]
    accts = [A(cfg, p) for p in range(n)]
    queues: dict[int, deque[Batch]] = {p: deque() for p in range(n)}
    facts: dict[int, deque[Any]] = {p: deque() for p in range(n)}
    msg = [0] * n
    amsg = [0] * n
    t_users = 0.0
    t_accts = 0.0
    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    pending = deque(batches)
    while pending or any(queues.values()) or any(facts.values()):
        if pending:
            b = pending.popleft()
            queues[b.partition % n].append(b)
        for p in range(n):
            while queues[p]:
                b = queues[p].popleft()
                t0 = time.perf_counter()
                out = users[p].apply(b, msg[p])
                t_users += time.perf_counter() - t0
                msg[p] += 1
                for q, fw in out.forwards.items():
                    queues[q].extend(fw)
                for q, fs in out.facts.items():
                    facts[q].append(fs)
            while facts[p]:
                fs = facts[p].popleft()
                t0 = time.perf_counter()
                accts[p].apply(fs, amsg[p])
                t_accts += time.perf_counter() - t0
                amsg[p] += 1
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "engine": engine,
        "wall": wall,
        "cpu": cpu,
        "users_s": t_users,
        "accounts_s": t_accts,
        "accepted": sum(u.meta.accepted for u in users),
        "duplicates": sum(u.meta.duplicates for u in users),
        "rejected": sum(sum(u.meta.rejected.values()) for u in users),
        "users": sum(len(u.users) for u in users),
        "customers": sum(len(a.accounts) for a in accts),
        "sweeps": sum(u.sweeps for u in users) + sum(a.sweeps for a in accts),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--users", type=int, default=60_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--batch", type=int, default=2_000, help="records per micro-batch")
    ap.add_argument("--days", type=float, default=7.0, help="record time the records span")
    ap.add_argument("--engines", default="python,native")
    args = ap.parse_args()
    t0 = time.perf_counter()
    batches = make_batches(args.records, args.users, args.days, args.partitions, args.batch)
    n = sum(len(b.records) for b in batches)
    print(
        f"### live core benchmark: {n:,} records, {args.users:,} users, {args.partitions} "
        f"partitions, micro-batches of {args.batch:,}, {args.days:g}d of record time "
        f"(generated in {time.perf_counter() - t0:.1f}s)\n"
    )
    print("| engine | seconds (wall) | records/s (wall) | records/s (CPU) | user stage s | "
          "account stage s | accepted | duplicates | rejected | users | customers | sweeps |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for engine in args.engines.split(","):
        r = run(engine, batches, args.partitions)
        rows.append(r)
        print(
            f"| {engine} | {r['wall']:.2f} | {n / r['wall']:,.0f} | {n / r['cpu']:,.0f} | "
            f"{r['users_s']:.2f} | {r['accounts_s']:.2f} | {r['accepted']:,} | "
            f"{r['duplicates']:,} | {r['rejected']:,} | {r['users']:,} | {r['customers']:,} | "
            f"{r['sweeps']} |",
            flush=True,
        )
    keys = ("accepted", "duplicates", "rejected", "users", "customers", "sweeps")
    if len({tuple(r[k] for k in keys) for r in rows}) > 1:
        print("MISMATCH between the engines", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
