"""Prometheus exposition of the partitions a worker owns (a custom collector read at scrape
time, so a rebalance leaves no stale series). Placeholder until the metric catalogue's series."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class EngagementCollector(Collector):
    def __init__(self, worker: Any) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Any]:
        w = self.worker
        acc = CounterMetricFamily(
            "engagement_records_accepted", "records accepted", labels=["partition"]
        )
        for p, part in sorted(w.user_parts.items()):
            acc.add_metric([str(p)], part.meta.accepted)
        yield acc
        owned = GaugeMetricFamily("engagement_partitions_owned", "partitions this worker owns")
        owned.add_metric([], len(w.user_parts))
        yield owned
