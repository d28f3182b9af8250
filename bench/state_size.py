"""Bytes of engine state per tracked user (and per customer), with and without dedupe ids.

Replays a simulated stream (streams.simulate) through the engine, sweeps expired state at the
end, then measures every user's state two ways:
- in memory: the deep size of the Python objects (sys.getsizeof over the object graph, shared
  interned strings counted once per user, which over-counts a little);
- serialized: the bytes of the encoded state (streams/codec.py), i.e. what one table write
  (and the changelog) carries for that user in the live pipeline; next to it, the bytes of the
  same state pickled (what releases before the codec wrote).
"Without dedupe ids" removes the `ids` and `resp` maps (event and response ids kept for the
allowed lateness + 1 h) before measuring.

usage: python bench/state_size.py [--records N] [--users N] [--days D] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.codec import encode_account, encode_user
from streams.config import Config
from streams.replay import Replayer
from streams.simulate import SimConfig, envelope_line, simulate


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(deep_size(x, seen) for x in obj)
    elif hasattr(obj, "__slots__"):
        size += sum(deep_size(getattr(obj, s), seen) for s in obj.__slots__ if hasattr(obj, s))
    return size


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--days", type=float, default=40)
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON (bench/run.py)")
    args = ap.parse_args()
    start = 1_795_168_800_000 - int(args.days * 86_400_000)
    sim = SimConfig(start_ms=start, duration_s=args.days * 86400, users=args.users,
                    rate=args.records / (args.days * 86400), seed=3)  # fmt: skip
    lines = [envelope_line(e) for e in simulate(sim)]
    as_of = json.loads(lines[-1])["ts"]
    r = Replayer(Config(), as_of * 1_000_000)
    t = time.perf_counter()
    r.feed(lines)
    r.pipeline.sweep()
    secs = time.perf_counter() - t
    users = r.pipeline.users[0].users
    accounts = r.pipeline.accounts[0].accounts
    mem = sum(deep_size(u) for u in users.values())
    ser = sum(len(encode_user(u)) for u in users.values())
    pkl = sum(len(pickle.dumps(u, protocol=5)) for u in users.values())
    stripped = []
    for u in users.values():
        c = copy.copy(u)
        c.ids = {}
        c.resp = None
        stripped.append(c)
    mem_n = sum(deep_size(u) for u in stripped)
    ser_n = sum(len(encode_user(u)) for u in stripped)
    pkl_n = sum(len(pickle.dumps(u, protocol=5)) for u in stripped)
    ids = sum(len(u.ids) + len(u.resp or ()) for u in users.values())
    amem = sum(deep_size(a) for a in accounts.values())
    aser = sum(len(encode_account(a)) for a in accounts.values())
    apkl = sum(len(pickle.dumps(a, protocol=5)) for a in accounts.values())
    n, na, per_id = len(users), len(accounts), max(ids, 1)
    print(f"records {len(lines):,} over {args.days:g} days, replayed in {secs:.1f}s; "
          f"tracked users {n:,}, customers {na:,}, dedupe ids held {ids:,}")  # fmt: skip
    print("| state | in memory, bytes/entity | serialized (codec), bytes/entity | pickled |")
    print("|---|---|---|---|")
    print(f"| user, with dedupe ids | {mem / n:,.0f} | {ser / n:,.0f} | {pkl / n:,.0f} |")
    print(f"| user, without dedupe ids | {mem_n / n:,.0f} | {ser_n / n:,.0f} | {pkl_n / n:,.0f} |")
    print(f"| dedupe ids alone, per id | {(mem - mem_n) / per_id:,.0f} | "
          f"{(ser - ser_n) / per_id:,.0f} | {(pkl - pkl_n) / per_id:,.0f} |")  # fmt: skip
    print(f"| customer | {amem / na:,.0f} | {aser / na:,.0f} | {apkl / na:,.0f} |")
    if args.json:
        figures = {
            "users": n, "customers": na, "ids": ids, "ids_per_user": ids / n,
            "user_with_ids_ser": ser / n, "user_with_ids_mem": mem / n,
            "user_without_ids_ser": ser_n / n, "user_without_ids_mem": mem_n / n,
            "per_id_ser": (ser - ser_n) / max(ids, 1), "per_id_mem": (mem - mem_n) / max(ids, 1),
            "customer_ser": aser / na, "customer_mem": amem / na,
            "user_with_ids_pickle": pkl / n, "user_without_ids_pickle": pkl_n / n,
            "customer_pickle": apkl / na,
        }  # fmt: skip
        with open(args.json, "w") as fh:
            json.dump(figures, fh)


if __name__ == "__main__":
    main()
