"""The pure helpers of the benchmark run (bench/report.py): every expected value is worked out
by hand here, not taken from the code."""

from __future__ import annotations

import pytest

from bench import report


def test_rate_and_ratio() -> None:
    assert report.rate(1_000, 4.0) == 250.0
    assert report.rate(10, 0.0) == 0.0
    assert report.ratio(3_000, 1_500) == "2.00x"
    assert report.ratio(1, 3) == "0.33x"
    assert report.ratio(5, 0) == "n/a"


def test_percentile_is_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]  # sorted: 1 2 3 4 5
    assert report.percentile(values, 50) == 3.0  # ceil(2.5) = 3rd
    assert report.percentile(values, 99) == 5.0
    assert report.percentile(values, 20) == 1.0  # exactly 1 of 5 at or below
    assert report.percentile(values, 100) == 5.0
    hundred = [float(i) for i in range(1, 101)]
    assert report.percentile(hundred, 99) == 99.0
    with pytest.raises(ValueError):
        report.percentile([], 50)
    with pytest.raises(ValueError):
        report.percentile(values, 0)


def test_per_million_and_recovery_extrapolation() -> None:
    assert report.per_million(2_000_000, 10_000) == 200_000_000  # 200 B/user -> 200 MB
    # 12 s measured with 50,000 users, of which 0.5 s reading them: 1M users add 19 x 0.5 s
    assert report.extrapolate_recovery(12.0, 0.5, 50_000, 1_000_000) == pytest.approx(21.5)
    with pytest.raises(ValueError):
        report.per_million(1, 0)


def test_delays_use_the_first_poll_that_covers_each_offset() -> None:
    marks = [
        ("t", 0, 10, 1_000_000),  # covered by the poll at 1000.4
        ("t", 0, 11, 1_000_100),  # first covered at 1000.9
        ("t", 1, 5, 1_000_200),  # partition 1 covered at 1000.9
        ("t", 1, 6, 1_000_300),  # never covered
    ]
    polls = [
        (1000.4, {"t/0": 10, "t/1": 4}),
        (1000.9, {"t/0": 12, "t/1": 5}),
    ]
    got, missed = report.delays(marks, polls)
    assert missed == 1
    assert sorted(round(x, 3) for x in got) == [0.4, 0.7, 0.8]


def test_verdicts() -> None:
    assert report.verdict(120_000, 100_000, True) == "met"
    assert report.verdict(90_000, 100_000, True) == "missed"
    assert report.verdict(0.8, 1.0, False) == "met"
    assert report.verdict(1.2, 1.0, False) == "missed"
    assert report.verdict(None, 1.0, False) == "n/a"
    assert report.verdict(float("nan"), 1.0, True) == "n/a"


def test_markdown_table_aligns_numbers_and_checks_widths() -> None:
    text = report.markdown_table(["figure", "value"], [["ours", "1,234 events/s"], ["x", "2"]])
    assert text.splitlines() == [
        "| figure | value |",
        "|---|---:|",
        "| ours | 1,234 events/s |",
        "| x | 2 |",
    ]
    with pytest.raises(ValueError):
        report.markdown_table(["a", "b"], [["only one"]])


def test_profile_summary_of_collapsed_stacks() -> None:
    # mode's service runner sits above the event loop in every stack of the worker
    loop = (
        "main (/x/.venv/lib/python3.11/site-packages/mode/worker.py:1);"
        "run_forever (/usr/lib/python3.11/asyncio/base_events.py:600);"
        "BaseEventLoop._run_once (/usr/lib/python3.11/asyncio/base_events.py:1900)"
    )
    repo = "/home/ci/engagement-metrics"
    pkgs = "/home/ci/engagement-metrics/.venv/lib/python3.11/site-packages"
    std, std2 = "/usr/lib/python3.11/asyncio", "/usr/lib/python3.11"
    lines = [
        f"{loop};apply ({repo}/streams/live.py:160);product ({repo}/streams/engine.py:300) 6",
        f"{loop};_users_apply ({repo}/agents/worker.py:330);encode_user ({repo}/streams/codec.py:337) 2",
        f"{loop};send ({pkgs}/aiokafka/producer/producer.py:400);write ({std}/selector_events.py:9) 1",
        f"{loop};select (/usr/lib/python3.11/selectors.py:468) 1",
        f"{loop};_users_apply ({repo}/agents/worker.py:330);warning ({std2}/logging/__init__.py:1) 1",
        "main (<frozen runpy>:88) 1",
        "garbage line without a count",
        "",
    ]
    s = report.summarize_collapsed(lines)
    assert s.samples == 12
    assert dict(s.self_top)["product (streams/engine.py)"] == pytest.approx(6 / 12)
    buckets = dict(s.buckets)
    # streams/codec.py is charged to encoding states, not to the engine: innermost frame wins
    assert buckets["encode / decode states"] == pytest.approx(2 / 12)
    assert buckets["engine (streams/)"] == pytest.approx(6 / 12)
    # the socket write under aiokafka's send is aiokafka's; a bare select is the event loop's
    assert buckets["aiokafka (fetch, produce, protocol)"] == pytest.approx(1 / 12)
    assert buckets["asyncio event loop"] == pytest.approx(1 / 12)
    assert buckets["logging"] == pytest.approx(1 / 12)
    assert buckets["other"] == pytest.approx(1 / 12)
    assert sum(buckets.values()) == pytest.approx(1.0)
    assert report.summarize_collapsed([]).samples == 0


def test_cpu_per_record_spans_the_records_after_the_first() -> None:
    # 1,001 records, 2.5 CPU seconds from the first to the last: 2.5 ms per record
    res = {"records": 1_001, "cpu_first": 1.5, "cpu_last": 4.0}
    assert report.cpu_per_record(res) == pytest.approx(0.0025)
    assert report.cpu_per_record({"records": 10, "first": 0, "last": 1}) is None
    assert report.cpu_per_record({"records": 1, "cpu_first": 0, "cpu_last": 1}) is None
    assert report.cpu_per_record({"records": 5, "cpu_first": 2, "cpu_last": 1}) is None


def test_peer_goal_is_judged_only_on_enough_records() -> None:
    # 150,000/s against 100,000/s: 1.5x; goal 1.25x
    assert report.peer_goal(150_000, 100_000, 1.25, 1_500_000) == ("met", "ours = 1.50x of it")
    assert report.peer_goal(100_000, 207_000, 0.5, 2_000_000) == ("missed", "ours = 0.48x of it")
    verdict, note = report.peer_goal(150_000, 100_000, 1.25, 300_000)
    assert verdict == ""
    assert note == "ours = 1.50x of it; judged on >= 1,500,000 records (`--records`)"
    assert report.peer_goal(0, 100_000, 1.25, 2_000_000) == ("n/a", "not measured")
    assert report.peer_goal(1, 0, 1.25, 2_000_000) == ("n/a", "not measured")


def test_peer_totals_add_the_partitions() -> None:
    parts = {
        "0": {"day": 9, "dau": 3, "mau": 10, "user_days": 25, "csat_responses": 4,
              "csat_positive": 3},
        "1": {"day": 9, "dau": 2, "mau": 7, "user_days": 11},  # no CSAT answer in it
        "2": {},  # an empty partition
    }  # fmt: skip
    assert report.peer_totals(parts) == {
        "dau": 5, "mau": 17, "user_days": 36, "csat_responses": 4, "csat_positive": 3,
    }  # fmt: skip


def test_plural() -> None:
    assert report.plural(1, "stream thread") == "1 stream thread"
    assert report.plural(2, "stream thread") == "2 stream threads"
    assert report.plural(1500, "record") == "1,500 records"


def test_gauge_value_reads_an_unlabelled_gauge_only() -> None:
    text = (
        "# HELP engagement_core_heap_bytes x\n# TYPE engagement_core_heap_bytes gauge\n"
        "engagement_core_heap_bytes_total 9.0\n"
        'engagement_core_heap_bytes{kind="a"} 7.0\n'
        "engagement_core_heap_bytes 1.2345e+08\n"
    )
    assert report.gauge_value(text, "engagement_core_heap_bytes") == 123_450_000.0
    assert report.gauge_value(text, "engagement_missing") is None
