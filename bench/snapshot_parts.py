"""Where one /snapshot's time goes, in process: the users' partials, the customers' scans (on
threads, as agents/gather.py runs them), merging the partials and `finalize`.

The simulate mix (as bench/live_core_bench.py makes it) is applied to the compiled live
partitions of one worker owning every partition; then the snapshot at a T one second after the
newest record is asked `--asks` times, T one second later each time (as a worker's clock moves
between asks). Prints ms per stage for each ask; the first ask builds the users' kept-current
sums (native/src/aggregate.rs) and is slow by design.

usage:
  python bench/snapshot_parts.py                                        # 60,000 users
  python bench/snapshot_parts.py --records 3000000 --users 1500000      # ~870,000 users held
"""

from __future__ import annotations

import argparse
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

from agents.gather import _partials  # noqa: E402
from agents.worker import GC_THRESHOLDS  # noqa: E402
from streams import native_live  # noqa: E402
from streams.config import Config  # noqa: E402
from streams.engine import Partial, finalize  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--users", type=int, default=60_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--asks", type=int, default=8)
    a = ap.parse_args()
    if not native_live.available():
        sys.exit("snapshot_parts: the compiled core is not built (make install)")
    cfg, n = Config(), a.partitions
    t0 = time.perf_counter()
    batches = live_core_bench.make_batches(a.records, a.users, 7.0, n, 2000)
    users, accts = partial_bench.feed("native", batches, n)
    del batches
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)  # as `engagement worker` sets them
    held = sum(len(u.users) for u in users)
    customers = sum(len(x.accounts) for x in accts)
    print(
        f"{a.records:,} records applied in {time.perf_counter() - t0:.0f} s: {held:,} users, "
        f"{customers:,} customers, {n} partitions",
        flush=True,
    )
    t = max(u.engine.watermark for u in users)
    print(
        "ask | users' partials | customers' scans started | merge (waits for the scans) | finalize | total (ms)"
    )
    for i in range(a.asks):
        t += 10**9
        s0 = time.perf_counter()
        scans = _partials([x.engine for x in accts], t)
        s1 = time.perf_counter()
        parts = [u.engine.partial(t) for u in users]
        s2 = time.perf_counter()
        total = Partial()
        for part in [*parts, *scans]:
            total.merge(part)
        s3 = time.perf_counter()
        finalize(total, t, cfg)
        s4 = time.perf_counter()
        ms = [(y - x) * 1000 for x, y in ((s1, s2), (s0, s1), (s2, s3), (s3, s4), (s0, s4))]
        print(f"{i + 1} | " + " | ".join(f"{v:.1f}" for v in ms), flush=True)


if __name__ == "__main__":
    main()
