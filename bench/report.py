"""Pure helpers of the benchmark run (bench/run.py): rates, percentiles, ratios, extrapolation,
the py-spy profile summary and the markdown table. No I/O; tests/unit/test_bench_report.py."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def rate(records: int, seconds: float) -> float:
    """Records per second; 0 when nothing was timed."""
    return records / seconds if seconds > 0 else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100) of `values`: the smallest value with at
    least q% of the values at or below it."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError("q must be in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def ratio(ours: float, other: float) -> str:
    """ours / other as `2.35x` (`n/a` when the other was not measured)."""
    if other <= 0 or ours < 0:
        return "n/a"
    return f"{ours / other:.2f}x"


def per_million(total: float, count: int) -> float:
    """`total` scaled linearly from `count` entities to 1,000,000."""
    if count <= 0:
        raise ValueError("count must be > 0")
    return total / count * 1_000_000


def extrapolate_recovery(measured_s: float, load_s: float, users: int, target: int) -> float:
    """Recovery time at `target` users, from one measured at `users`: the part that grows with the
    state (`load_s`, reading and unpickling every user) scaled linearly, the rest kept."""
    if users <= 0:
        raise ValueError("users must be > 0")
    return measured_s + load_s * (target - users) / users


def delays(
    marks: Iterable[tuple[str, int, int, int]], polls: Sequence[tuple[float, dict[str, int]]]
) -> tuple[list[float], int]:
    """Seconds from each record's timestamp to the first poll whose coverage includes it.

    `marks`: (topic, partition, offset, record timestamp ms) of the records sent; `polls`: (wall
    time of the answer, coverage: "topic/partition" -> last offset included), in time order.
    Returns the delays and how many records no poll covered."""
    out: list[float] = []
    missed = 0
    # per partition key: the polls' coverage in time order, scanned with a moving cursor
    by_key: dict[str, list[tuple[float, int]]] = {}
    for t, cov in polls:
        for k, off in cov.items():
            by_key.setdefault(k, []).append((t, off))
    for key, group in _group_marks(marks).items():
        seen = by_key.get(key, [])
        i = 0
        for offset, ts_ms in group:
            while i < len(seen) and seen[i][1] < offset:
                i += 1
            if i == len(seen):
                missed += 1
            else:
                out.append(max(0.0, seen[i][0] - ts_ms / 1000))
    return out, missed


def _group_marks(
    marks: Iterable[tuple[str, int, int, int]],
) -> dict[str, list[tuple[int, int]]]:
    groups: dict[str, list[tuple[int, int]]] = {}
    for topic, part, offset, ts in marks:
        groups.setdefault(f"{topic}/{part}", []).append((offset, ts))
    for g in groups.values():
        g.sort()
    return groups


@dataclass(frozen=True)
class ProfileSummary:
    samples: int
    self_top: list[tuple[str, float]]  # (function, share of samples, self)
    buckets: list[tuple[str, float]]  # (bucket, share of samples, inclusive of the leaf)


# Checked in order against each frame as `function (path)` (paths shortened by _frame_name): the
# specific buckets come before the general ones.
BUCKETS = (
    ("logging", ("(logging/",)),
    (
        "encode / decode states",
        ("(streams/codec.py", "dumps (streams/live.py", "loads (streams/live.py", "pickle"),
    ),
    ("RocksDB table writes/reads (faust stores)", ("faust/stores/", "rocksdict")),
    ("HTTP (/snapshot, /metrics)", ("aiohttp/", "agents/views.py", "agents/metrics.py")),
    ("engine (streams/)", ("(streams/",)),
    ("Faust tables, changelog, streams", ("faust/", "mode/")),
    ("aiokafka (fetch, produce, protocol)", ("aiokafka/", "kafka/")),
    ("msgpack / msgspec", ("msgspec",)),
    ("asyncio event loop", ("asyncio/", "selectors.py")),
)
# Charged only when no other bucket recognises a frame of the stack: the event loop is at the root
# of every stack, and a socket write is charged to the client that writes.
GENERIC = "asyncio event loop"


def _frame_name(frame: str) -> str:
    """`function (path/to/file.py:LINE)` -> `function (short/path.py)`: the path after
    site-packages/ or the standard library, or from the project's top directory."""
    name, _, where = frame.partition(" (")
    if not where:
        return name
    path = where.rsplit(":", 1)[0].rstrip(")")
    if "site-packages/" in path:
        path = path.rsplit("site-packages/", 1)[1]
    elif "/lib/python3" in path:
        path = path.rsplit("/lib/python3", 1)[1].split("/", 1)[-1]
    else:
        for top in ("streams", "agents", "bench", "tests"):
            if f"/{top}/" in path:
                path = top + "/" + path.rsplit(f"/{top}/", 1)[1]
                break
    return f"{name} ({path})"


def summarize_collapsed(lines: Iterable[str], top: int = 12) -> ProfileSummary:
    """Summarize py-spy's `--format raw` output (collapsed stacks: `frame;frame;... count`).

    `self_top`: the leaf functions taking the most samples; `buckets`: the share of samples
    charged to each bucket of BUCKETS: a stack goes to the innermost frame, below the event
    loop's `_run_once` if there is one, that a bucket other than the event loop recognises, else
    to the event loop if any frame is its, else to `other` (the shares add up to 100%)."""
    total = 0
    self_counts: dict[str, int] = {}
    bucket_counts: dict[str, int] = {}
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, n_text = line.rpartition(" ")
        try:
            n = int(n_text)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += n
        names = [_frame_name(f) for f in frames]
        leaf = names[-1]
        self_counts[leaf] = self_counts.get(leaf, 0) + n
        # only the frames of the callback the event loop is running count: the ones above its
        # `_run_once` (the worker's entry point, mode's service runner) hold every sample
        loop_at = max(
            (i for i, f in enumerate(names) if f.partition(" (")[0].endswith("_run_once")),
            default=-1,
        )
        generic = loop_at >= 0
        for frame in reversed(names[loop_at + 1 :]):
            hit = next((b for b, keys in BUCKETS if any(k in frame for k in keys)), None)
            if hit == GENERIC:
                generic = True
            elif hit is not None:
                bucket_counts[hit] = bucket_counts.get(hit, 0) + n
                break
        else:
            where = GENERIC if generic else "other"
            bucket_counts[where] = bucket_counts.get(where, 0) + n
    if not total:
        return ProfileSummary(0, [], [])
    self_top = sorted(self_counts.items(), key=lambda kv: -kv[1])[:top]
    buckets = sorted(bucket_counts.items(), key=lambda kv: -kv[1])
    return ProfileSummary(
        total, [(k, v / total) for k, v in self_top], [(k, v / total) for k, v in buckets]
    )


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub markdown table; numeric columns (by the first row) are right-aligned."""
    rows = [list(map(str, r)) for r in rows]
    for r in rows:
        if len(r) != len(header):
            raise ValueError(f"row {r} has {len(r)} cells, the header {len(header)}")
    align = ["---"] * len(header)
    if rows:
        for i, cell in enumerate(rows[0]):
            if _numeric(cell):
                align[i] = "---:"
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _numeric(cell: str) -> bool:
    text = cell.replace(",", "").replace("%", "").replace("x", "").split(" ")[0]
    try:
        float(text)
    except ValueError:
        return False
    return True


def verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    """`met`, `missed` or `n/a` for a figure against its target."""
    if value is None or math.isnan(value):
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "missed"


# The peers' goals (issue 14) are judged on a backlog of at least this many records: on fewer,
# start-up and the last commit weigh too much in a peer's rate.
PEER_GOAL_RECORDS = 1_500_000


def cpu_per_record(res: Mapping[str, Any]) -> float | None:
    """CPU seconds per record of a contender's timed span: (`cpu_last` - `cpu_first`) over the
    records after the first (the span starts at the first record); None when not reported."""
    try:
        cpu = float(res["cpu_last"]) - float(res["cpu_first"])
        records = int(res["records"]) - 1
    except (KeyError, TypeError, ValueError):
        return None
    if records <= 0 or cpu < 0:
        return None
    return cpu / records


def peer_goal(ours: float, peer: float, goal: float, records: int) -> tuple[str, str]:
    """(verdict, note) for "ours >= goal x the peer": judged only when both ran on at least
    PEER_GOAL_RECORDS records (`records`: the fewer of the two), `n/a` when either rate is 0."""
    if ours <= 0 or peer <= 0:
        return "n/a", "not measured"
    note = f"ours = {ratio(ours, peer)} of it"
    if records < PEER_GOAL_RECORDS:
        return "", f"{note}; judged on >= {PEER_GOAL_RECORDS:,} records (`--records`)"
    return verdict(ours / peer, goal, True), note


def peer_totals(partitions: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """The per-partition figures of an expert peer added up over the partitions (users stay in
    their key's partition, so the sums are the whole topic's): dau, mau, user_days,
    csat_responses, csat_positive."""
    keys = ("dau", "mau", "user_days", "csat_responses", "csat_positive")
    return {k: sum(int(p.get(k, 0)) for p in partitions.values()) for k in keys}


def plural(n: int, noun: str) -> str:
    """`1 stream thread`, `2 stream threads`."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def gauge_value(metrics_text: str, name: str) -> float | None:
    """The value of the unlabelled gauge `name` in a /metrics text (None when absent)."""
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def histogram_buckets(metrics_text: str, name: str) -> list[tuple[str, float]]:
    """The cumulative (le, count) buckets of histogram `name` in a /metrics text, summed over
    its series (one per worker process here), +Inf last."""
    by_le: dict[str, float] = {}
    prefix = f"{name}_bucket{{"
    for line in metrics_text.splitlines():
        if not line.startswith(prefix):
            continue
        labels, _, value = line.rpartition(" ")
        le = labels.split('le="', 1)[1].split('"', 1)[0]
        by_le[le] = by_le.get(le, 0.0) + float(value)
    return sorted(by_le.items(), key=lambda kv: math.inf if kv[0] == "+Inf" else float(kv[0]))


def bucket_delta(
    after: Sequence[tuple[str, float]], before: Sequence[tuple[str, float]]
) -> list[tuple[str, float]]:
    """The records a histogram counted between two scrapes, bucket by bucket."""
    was = dict(before)
    return [(le, n - was.get(le, 0.0)) for le, n in after]


def within(buckets: Sequence[tuple[str, float]], seconds: float) -> float:
    """The fraction of the records counted in buckets up to `seconds` (a bucket bound)."""
    total = buckets[-1][1] if buckets else 0.0
    for le, n in buckets:
        if le != "+Inf" and float(le) == seconds:
            return n / total if total else math.nan
    raise ValueError(f"no bucket bound {seconds}")


def quantile_le(buckets: Sequence[tuple[str, float]], q: float) -> float:
    """The smallest bucket bound holding at least a fraction `q` of the records: the q-th
    percentile is at most this (inf: only the +Inf bucket holds it; nan: no record)."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return math.nan
    for le, n in buckets:
        if n >= q * total:
            return math.inf if le == "+Inf" else float(le)
    return math.inf
