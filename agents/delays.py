"""How long records wait: from a record's Kafka timestamp to the moment the users stage has
applied it, so that /snapshot counts it (its "end-to-end delay").

Kafka Streams reports the same figure (`record-e2e-latency`, KIP-613: the wall clock minus the
record's timestamp when a node processes it). Here every record the users stage applies is
counted once, in the partition that owns its user: a record forwarded from the partition its
producer chose is counted when its owner applies it, not when it is forwarded; a micro-batch
delivered again after a crash or a rebalance is not counted again. Rejected records
count too (/snapshot counts them as rejected). The timestamp is the producer's (CreateTime), so
the delay includes the producer's own buffering and any clock difference between the producer's
host and the worker's; a backlog read long after it was written shows its age.

Exported as the histogram `engagement_record_delay_seconds` (agents/metrics.py); the bench
reads its buckets before and after a live phase (bench/run.py, the delay rows).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

# upper bounds (seconds) of the buckets; +Inf is added. 0.3 and 1 are the live targets' p50 and
# p99 bounds (bench/RESULTS.md), so "p99 <= 1 s" reads exactly off the buckets.
DELAY_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
)  # fmt: skip


class DelayHistogram:
    """Counts of record delays per bucket (not cumulative; the last one is +Inf), and their
    sum in seconds."""

    def __init__(self, bounds: Iterable[float] = DELAY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        # bounds in ms: a delay of d ms goes to the first bucket whose bound is >= d
        self._bounds_ms = [b * 1000 for b in self.bounds]
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum_ms = 0

    def observe(self, now_ms: int, timestamps_ms: Sequence[int]) -> None:
        """Count records whose timestamps (ms) are `timestamps_ms`, applied at `now_ms`."""
        if not timestamps_ms:
            return
        bounds, counts = self._bounds_ms, self.counts
        n = len(timestamps_ms)
        self.sum_ms += now_ms * n - sum(timestamps_ms)
        first = bisect.bisect_left(bounds, now_ms - max(timestamps_ms))
        if first == bisect.bisect_left(bounds, now_ms - min(timestamps_ms)):
            counts[first] += n  # the usual case: the whole micro-batch in one bucket
            return
        for ts in timestamps_ms:
            counts[bisect.bisect_left(bounds, now_ms - ts)] += 1

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, records with a delay <= le) per bucket, +Inf last: Prometheus' buckets."""
        out: list[tuple[str, int]] = []
        running = 0
        for b, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append((_le(b), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out


def _le(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else str(bound)
