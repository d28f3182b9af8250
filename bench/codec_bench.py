"""What persisting the changed entities costs, per entity: the export to Python objects plus
streams/codec.py's encoding (`encode_user(export(key))`, the worker's path today) against the
core writing the bytes itself (`export_encoded`, native/src/codec.rs).

The state is built as bench/live_core_bench.py builds it (the simulate mix, applied to every
compiled user and account partition), then every user and customer is encoded both ways (best
of --repeat), and the bytes compared.

usage:
  python bench/codec_bench.py                         # 300,000 records, 60,000 users
  python bench/codec_bench.py --records 100000 --users 20000
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

from bench.live_core_bench import make_batches  # noqa: E402
from streams import codec  # noqa: E402
from streams.config import Config  # noqa: E402
from streams.live import Batch  # noqa: E402


def build(batches: list[Batch], n: int) -> tuple[list[Any], list[Any]]:
    from streams.native_live import NativeLiveAccountPartition, NativeLiveUserPartition

    cfg = Config()
    users = [NativeLiveUserPartition(cfg, p, n, n) for p in range(n)]
    accts = [NativeLiveAccountPartition(cfg, p) for p in range(n)]
    queues: dict[int, deque[Batch]] = {p: deque() for p in range(n)}
    msg = [0] * n
    amsg = [0] * n
    for b in batches:
        queues[b.partition % n].append(b)
        for p in range(n):
            while queues[p]:
                out = users[p].apply(queues[p].popleft(), msg[p])
                msg[p] += 1
                for q, fw in out.forwards.items():
                    queues[q].extend(fw)
                for q, fs in out.facts.items():
                    accts[q].apply(fs, amsg[q])
                    amsg[q] += 1
    return users, accts


def best(f: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--users", type=int, default=60_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    batches = make_batches(args.records, args.users, args.days, args.partitions, 2_000)
    users, accts = build(batches, args.partitions)
    ok = True
    print("| entities | count | export + encode (µs/entity) | export_encoded (µs/entity) | x |")
    print("|---|---:|---:|---:|---:|")
    for what, parts, encode in (
        ("users", users, codec.encode_user),
        ("customers", accts, codec.encode_account),
    ):
        views = [p.users if what == "users" else p.accounts for p in parts]
        keys = [list(v) for v in views]
        count = sum(len(k) for k in keys)

        def python(views: list[Any] = views, keys: list[Any] = keys, encode: Any = encode) -> Any:
            return [
                {k: encode(s) for k, s in v.export(ks).items()}
                for v, ks in zip(views, keys, strict=True)
            ]

        def core(views: list[Any] = views, keys: list[Any] = keys) -> Any:
            return [v.export_encoded(ks) for v, ks in zip(views, keys, strict=True)]

        ok = ok and python() == core()
        tp, tc = best(python, args.repeat), best(core, args.repeat)
        print(
            f"| {what} | {count:,} | {tp / count * 1e6:.2f} | {tc / count * 1e6:.2f} | "
            f"{tp / tc:.1f} |"
        )
    if not ok:
        print("MISMATCH: the core's bytes differ from streams/codec.py's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
