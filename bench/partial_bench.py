"""Micro-benchmark of `engine.partial(t)`, what /snapshot and /metrics call for every owned
partition on every request: the Python live partitions (`streams.live`, the Python engine on
dicts), the compiled ones computing it in the core (`streams.native_live`,
native/src/partial.rs) and the compiled ones' former path (the whole state exported to Python
objects, then the Python engine: `engine.to_python().partial(t)`).

The simulate mix (as bench/live_core_bench.py makes it) is applied to every partition of one
worker; then every partition's partial at T ("now": the newest record) is computed `--repeat`
times. Prints ms per call over every partition (the work of one /snapshot on a worker owning
them all; merging and `finalize` not included), and checks the engines agree.

usage:
  python bench/partial_bench.py                                    # 60,000 users
  python bench/partial_bench.py --users 1000000 --records 5000000 --engines native
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.live_core_bench import make_batches  # noqa: E402
from streams.config import Config  # noqa: E402
from streams.engine import Partial, partial_to_json  # noqa: E402
from streams.live import Batch, LiveAccountPartition, LiveUserPartition  # noqa: E402
from streams.timeutil import MS  # noqa: E402


def feed(
    engine: str, batches: list[Batch], n: int, take_ids: bool = False
) -> tuple[list[Any], list[Any]]:
    """Every user and account partition of `engine` ("python" or "native") fed the batches;
    `take_ids`: the native partitions' event-id writes taken after each batch, as the worker's
    epochs take them (else the core keeps logging them)."""
    cfg = Config()
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
    pending = deque(batches)
    while pending or any(queues.values()) or any(facts.values()):
        if pending:
            b = pending.popleft()
            queues[b.partition % n].append(b)
        for p in range(n):
            while queues[p]:
                out = users[p].apply(queues[p].popleft(), msg[p])
                msg[p] += 1
                if take_ids:
                    users[p].take_id_writes()
                for q, fw in out.forwards.items():
                    queues[q].extend(fw)
                for q, fs in out.facts.items():
                    facts[q].append(fs)
            while facts[p]:
                accts[p].apply(facts[p].popleft(), amsg[p])
                amsg[p] += 1
    return users, accts


def time_partials(parts: list[Any], t: int, repeat: int, export: bool) -> tuple[list[float], Any]:
    """ms of each round (every partition's partial at t), and the merged partial."""
    times = []
    total = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        total = Partial()
        for part in parts:
            eng = part.engine
            total.merge(eng.to_python().partial(t) if export else eng.partial(t))
        times.append((time.perf_counter() - t0) * 1000)
    return times, total


def sorted_json(p: Partial) -> dict[str, Any]:
    d = partial_to_json(p)
    for k in ("ttfv", "session_durs", "resolution_durs", "revenue_90", "revenue_30", "health"):
        d[k] = sorted(d[k], key=str)
    return {k: dict(sorted(v.items())) if isinstance(v, dict) else v for k, v in d.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--users", type=int, default=60_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--engines", default="python,native,export")
    args = ap.parse_args()
    t0 = time.perf_counter()
    batches = make_batches(args.records, args.users, args.days, args.partitions, 2_000)
    n_rec = sum(len(b.records) for b in batches)
    t = max(r[1] for b in batches for r in b.records) * MS  # "now": the newest record
    print(
        f"### partial(t) benchmark: {n_rec:,} records, {args.users:,} users, "
        f"{args.partitions} partitions, {args.days:g}d (generated in "
        f"{time.perf_counter() - t0:.1f}s); T = the newest record; {args.repeat} rounds\n"
    )
    print("| engine | users | customers | ms per round: min | median | max | feed s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    fed: dict[str, tuple[list[Any], list[Any]]] = {}
    results = {}
    for engine in args.engines.split(","):
        src = "native" if engine == "export" else engine
        t1 = time.perf_counter()
        if src not in fed:
            fed[src] = feed(src, batches, args.partitions)
        feed_s = time.perf_counter() - t1
        users, accts = fed[src]
        times, total = time_partials(users + accts, t, args.repeat, engine == "export")
        results[engine] = sorted_json(total)
        if engine == "native":  # where it goes: the core's scans alone, users then customers
            for what, ps in (("users", users), ("customers", accts)):
                scan = []
                for _ in range(args.repeat):
                    t1 = time.perf_counter()
                    for part in ps:
                        part._core.partial(t)
                    scan.append((time.perf_counter() - t1) * 1000)
                print(
                    f"| (native: the core's scans of the {what} alone) | | | {min(scan):.1f} | "
                    f"{statistics.median(scan):.1f} | {max(scan):.1f} | |"
                )
        print(
            f"| {engine} | {sum(len(u.users) for u in users):,} | "
            f"{sum(len(a.accounts) for a in accts):,} | {min(times):.1f} | "
            f"{statistics.median(times):.1f} | {max(times):.1f} | {feed_s:.1f} |",
            flush=True,
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nmax RSS {rss:,.0f} MB")
    if len({repr(r) for r in results.values()}) > 1:
        print("MISMATCH between the engines' partials", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
