"""The record-delay histogram (agents/delays.py) and the bench's reading of it
(bench/report.py): counts per bucket against delays computed by hand."""

from __future__ import annotations

import math

from agents.delays import DelayHistogram
from bench import report


def test_each_delay_lands_in_the_first_bucket_at_or_above_it() -> None:
    h = DelayHistogram(bounds=(0.1, 0.3, 1.0))
    now = 1_000_000
    # delays (ms): -5 (clock ahead), 0, 100 (on the bound), 101, 300, 999, 1000, 1001, 60000
    h.observe(now, [now + 5, now, now - 100, now - 101, now - 300, now - 999, now - 1000])
    h.observe(now, [now - 1001, now - 60_000])
    assert h.counts == [3, 2, 2, 2]
    assert h.count == 9
    assert h.sum_ms == -5 + 0 + 100 + 101 + 300 + 999 + 1000 + 1001 + 60_000
    assert h.cumulative() == [("0.1", 3), ("0.3", 5), ("1", 7), ("+Inf", 9)]


def test_the_bench_reads_percentile_bounds_off_the_exposition() -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import HistogramMetricFamily

    h = DelayHistogram(bounds=(0.1, 0.3, 1.0))
    h.observe(10_000, [10_000 - d for d in (50, 60, 70, 250, 900)])

    class C:
        def collect(self):  # type: ignore[no-untyped-def]
            yield HistogramMetricFamily(
                "engagement_record_delay_seconds",
                "",
                buckets=[(le, float(n)) for le, n in h.cumulative()],
                sum_value=h.sum_ms / 1000,
            )

    reg = CollectorRegistry()
    reg.register(C())  # type: ignore[arg-type]
    text = generate_latest(reg).decode()
    before = [("0.1", 1.0), ("0.3", 1.0), ("1", 1.0), ("+Inf", 1.0)]
    got = report.histogram_buckets(text, "engagement_record_delay_seconds")
    assert got == [("0.1", 3.0), ("0.3", 4.0), ("1", 5.0), ("+Inf", 5.0)]
    delta = report.bucket_delta(got, before)
    assert delta == [("0.1", 2.0), ("0.3", 3.0), ("1", 4.0), ("+Inf", 4.0)]
    assert report.quantile_le(delta, 0.5) == 0.1  # 2 of 4 within 100 ms
    assert report.quantile_le(delta, 0.99) == 1.0
    assert report.within(delta, 0.3) == 0.75
    assert math.isnan(report.quantile_le([("+Inf", 0.0)], 0.5))
    assert report.quantile_le([("0.1", 0.0), ("+Inf", 3.0)], 0.5) == math.inf
