"""The compiled core's heap per user, in process: what holding the users and customers costs.

The simulate mix (as bench/live_core_bench.py makes it) is fed to the native partitions of one
worker owning every partition, the event-id writes taken after each micro-batch as the worker's
epochs take them; glibc's heap in use (`mallinfo2`) before and after gives the bytes the core
holds per user (customers included), and after one ask of every partition's partial at a "now"
a second after the newest record, what the partials kept between asks hold on top (the users'
sums, native/src/aggregate.rs; the customers' rows, native/src/account_partial.rs). Then one `malloc_trim(0)` (agents/heap.py): how long it
takes and what it gives back. Linux with glibc 2.33 or later.

usage:
  python bench/core_memory.py                                        # 300,000 records, 60,000 users
  python bench/core_memory.py --records 3000000 --users 1500000      # the 1M row: ~870,000 users
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import live_core_bench  # noqa: E402
import partial_bench  # noqa: E402

from agents.heap import HeapTrimmer, resident_bytes  # noqa: E402
from streams import native_live  # noqa: E402


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in [
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        ]
    ]


def heap_in_use() -> int:
    """Bytes glibc's malloc has handed out and not had back (small blocks and mmapped ones)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    m = libc.mallinfo2()
    return int(m.uordblks + m.hblkhd)


def print_footprint(title: str, parts: list[list[tuple[str, int, int]]], nu: int) -> None:
    """One table of where the heap goes (`footprint()` of each partition, summed by part)."""
    total: dict[str, list[int]] = {}
    for one in parts:
        for name, items, nbytes in one:
            t = total.setdefault(name, [0, 0])
            t[0] += items
            t[1] += nbytes
    print(f"\n{title} (requested bytes, capacities included):\n")
    print("| part | items | MiB | bytes a user | bytes an item |")
    print("|---|---:|---:|---:|---:|")
    for name, (items, nbytes) in total.items():
        print(
            f"| {name} | {items:,} | {nbytes / 2**20:,.1f} | {nbytes / max(nu, 1):,.0f} "
            f"| {nbytes / max(items, 1):,.0f} |"
        )
    s = sum(t[1] for t in total.values())
    print(f"| all | | {s / 2**20:,.1f} | {s / max(nu, 1):,.0f} | |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--users", type=int, default=60_000)
    ap.add_argument("--partitions", type=int, default=8)
    args = ap.parse_args()
    n = args.partitions
    batches = live_core_bench.make_batches(args.records, args.users, 7.0, n, 2_000)
    gc.collect()
    before = heap_in_use()
    core_before = native_live.core_heap_bytes() or 0
    users, accts = partial_bench.feed("native", batches, n, take_ids=True)
    del batches
    gc.collect()
    held = heap_in_use() - before
    core_held = (native_live.core_heap_bytes() or 0) - core_before
    nu = sum(len(u.users) for u in users)
    na = sum(len(a.accounts) for a in accts)
    print(f"### the core's heap: {args.records:,} records, {n} partitions\n")
    print("| users | customers | heap held, MiB | bytes a user (customers included) |")
    print("|---:|---:|---:|---:|")
    print(f"| {nu:,} | {na:,} | {held / 2**20:,.0f} | {held / max(nu, 1):,.0f} |")
    print(
        f"\nthe core's own count (engagement_core_heap_bytes, requested bytes without malloc's "
        f"overhead): {core_held / 2**20:,.0f} MiB, {core_held / max(nu, 1):,.0f} bytes a user"
    )
    print_footprint("the users' parts", [u._core.footprint() for u in users], nu)
    print_footprint("the customers' parts", [a._core.footprint() for a in accts], nu)
    newest = max((u.engine.watermark or 0) for u in users)
    t = newest + 1_000_000_000
    before = heap_in_use()
    for part in [*users, *accts]:
        part.engine.partial(t)
    gc.collect()
    kept = heap_in_use() - before
    print(
        f"\nthe partials kept between asks (one ask each at T = the newest record + 1 s): "
        f"{kept / 2**20:,.0f} MiB more, {kept / max(nu, 1):,.0f} bytes a user"
    )
    trimmer = HeapTrimmer()
    if trimmer.available:
        rss = resident_bytes()
        t0 = time.perf_counter()
        gone = trimmer.trim()
        ms = (time.perf_counter() - t0) * 1000
        print(
            f"\nmalloc_trim(0): {ms:.1f} ms, {gone / 2**20:,.0f} of {rss / 2**20:,.0f} MiB given back"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
