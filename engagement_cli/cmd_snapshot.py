"""Print the live metrics snapshot of the workers, as a readable table or as JSON.

Asks a worker for `GET /snapshot[?as_of=T]`; the worker gathers every partition from every
worker, so any one of them answers for the whole fleet. The worker's URL: --url, else
ENGAGEMENT_WORKER_URL, else http://127.0.0.1:6066. --as-of takes RFC 3339 (with an offset) or
epoch milliseconds; without it the worker answers as of its clock (now).

--wait S waits up to S seconds until the workers have counted every record that was in the input
topics when the command started, and the customer facts those records made (the snapshot's
coverage reaches the end offsets Kafka gives for the prefixed input topics, then for the
worker's account-facts topic; from KAFKA_BOOTSTRAP, ENGAGEMENT_TOPIC_PREFIX and
ENGAGEMENT_APP_ID), e.g. after `engagement load`; without it the command answers at once.

examples:
  engagement snapshot
  engagement snapshot --as-of 2026-11-20T12:00:00Z
  engagement snapshot --json | python3 -m json.tool
  engagement load events.jsonl && engagement snapshot --wait 120   # once all is counted
  engagement snapshot --url http://10.0.0.7:6066 --json > snapshot.json
  ENGAGEMENT_WORKER_URL=http://127.0.0.1:6067 engagement snapshot

exit codes:
  0  printed
  1  no worker answered at the URL, it answered something unexpected, or the as-of is older
     than the state still holds (HTTP 422: ask for a later instant, or replay the records)
  2  bad usage, or an as-of that is not RFC 3339 nor epoch milliseconds (ours or HTTP 400)
  5  the workers cannot answer yet (HTTP 503: a rebalance in progress, a worker down, Redis
     unavailable): retry in a few seconds (with --wait: not caught up in time)
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agents.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from agents.internal import Names

EXIT_RETRY = 5

# The snapshot keys of docs/metrics.md §3, by family, in the catalogue's order.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Activity", ("dau", "wau", "mau", "stickiness_pct", "lifecycle", "feature_adoption_pct")),
    ("Surveys", ("csat_pct_1h", "csat_pct_24h", "csat_pct_7d", "csat_responses_24h", "nps_7d",
                 "nps_30d", "nps_responses_30d", "ces_avg_7d", "ces_avg_30d", "by_touchpoint")),
    ("Onboarding", ("first_week_activation_pct", "first_week_return_pct", "ttfv_median_hours",
                    "funnel_reached", "funnel_dropoff_pct", "d1_retention_pct",
                    "d7_retention_pct", "d30_retention_pct")),
    ("Subscriptions", ("subscribers", "churn_rate_pct_30d", "retention_rate_pct_30d")),
    ("Commerce", ("orders_90d", "revenue_90d", "aov_90d", "repeat_purchase_rate_pct_90d",
                  "return_rate_pct_90d", "clv_estimate")),
    ("Web", ("sessions_24h", "avg_session_duration_s_24h", "bounce_rate_pct_24h", "ctr_pct_24h",
             "social_interactions_24h")),
    ("Support", ("tickets_opened_24h", "open_tickets", "avg_resolution_hours_7d")),
    ("Customer health", ("customers_at_risk", "health_avg")),
    ("Churn signals", ("churn_signals_1h", "churn_signals_24h")),
    ("Pipeline", ("accepted", "duplicates", "rejected")),
)  # fmt: skip
NOT_METRICS = ("as_of", "coverage")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--as-of", metavar="T", help="the instant (RFC 3339 or epoch ms); default now")
    p.add_argument("--json", action="store_true", help="print the raw JSON answer")
    p.add_argument(
        "--url", help="the worker (env ENGAGEMENT_WORKER_URL; default http://127.0.0.1:6066)"
    )
    p.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="seconds to wait (default 30)"
    )
    p.add_argument(
        "--wait",
        type=float,
        metavar="S",
        help="first wait up to S seconds until every record already in the input topics is counted",
    )


async def _end_offsets(names: list[str]) -> dict[str, int]:
    """ "topic/partition" -> the offset of the last record, of the topics `names`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from agents.admin import connect, default_bootstrap, partition_counts
    from agents.security import kafka_kwargs

    admin = await connect(default_bootstrap())
    try:
        counts = await partition_counts(admin, names)
    finally:
        await admin.close()
    missing = [n for n in names if not counts.get(n)]
    if missing:
        raise LookupError(
            f"no topic {missing[0]} (check ENGAGEMENT_TOPIC_PREFIX and ENGAGEMENT_APP_ID)"
        )
    tps = [TopicPartition(n, p) for n in names for p in range(counts[n])]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=default_bootstrap(), enable_auto_commit=False, **kafka_kwargs()
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {f"{tp.topic}/{tp.partition}": end - 1 for tp, end in ends.items() if end > 0}


def caught_up(coverage: dict[str, int], ends: dict[str, int]) -> list[str]:
    """The partitions whose last record (by `ends`) the coverage does not include yet."""
    return [k for k, last in sorted(ends.items()) if coverage.get(k, -1) < last]


def format_value(v: Any) -> str:
    """A metric value for people: n/a for null, thousands separators, 2 decimals for ratios."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.2f}"
    return str(v)


def _rows(key: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        if not value:
            return [(key, "(none)")]
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out.extend(_rows(f"{key}.{k}", v))
        return out
    return [(key, format_value(value))]


def render_table(snap: dict[str, Any], source: str = "") -> str:
    """The snapshot as sections of `name  value` rows; nested objects as dotted names."""
    lines = [f"Snapshot as of {snap.get('as_of', '?')}" + (f"  ({source})" if source else "")]
    sections = [(title, keys) for title, keys in SECTIONS]
    extra = tuple(
        k for k in snap if k not in NOT_METRICS and all(k not in ks for _, ks in SECTIONS)
    )
    if extra:
        sections.append(("Other", extra))
    for title, keys in sections:
        rows: list[tuple[str, str]] = []
        for key in keys:
            if key in snap:
                rows.extend(_rows(key, snap[key]))
        if not rows:
            continue
        width = max(len(name) for name, _ in rows)
        lines.append("")
        lines.append(title)
        lines.extend(f"  {name:<{width}}  {value:>12}" for name, value in rows)
    coverage = snap.get("coverage")
    if isinstance(coverage, dict):
        lines.append("")
        lines.append(f"covers {len(coverage)} source partitions (offsets in --json)")
    return "\n".join(lines) + "\n"


def _wait(url: str, args: argparse.Namespace, prog: str) -> dict[str, Any]:
    """The snapshot once it covers every record in the input topics now (or TimeoutError)."""
    import asyncio
    import time

    from aiokafka.errors import KafkaError

    from agents.admin import AdminError
    from agents.settings import Settings
    from engagement_cli import client
    from streams.topics import INPUT_TOPICS

    def ends_of(names: list[str]) -> dict[str, int]:
        try:
            return asyncio.run(asyncio.wait_for(_end_offsets(names), 30))
        except (TimeoutError, OSError, LookupError, KafkaError, AdminError) as exc:
            raise client.WorkerError(
                client.UNREACHABLE, f"cannot read the topics' end offsets from Kafka: {exc}"
            ) from exc

    s = Settings.load()
    deadline = time.monotonic() + args.wait
    # Two steps: the input records the user partitions have applied, then the account facts
    # they made (acknowledged in Kafka before the records count as applied).
    for names in ([s.topic(t) for t in INPUT_TOPICS], [Names.of(s).account_facts]):
        ends = ends_of(names)
        last = "no answer yet"
        while True:
            try:
                snap = client.snapshot(url, args.as_of, timeout=args.timeout)
                missing = caught_up(snap.get("coverage") or {}, ends)
                if not missing:
                    break
                last = f"{len(missing)} partitions not caught up, e.g. {missing[0]}"
            except client.WorkerError as exc:
                if exc.kind not in (client.UNAVAILABLE, client.UNREACHABLE):
                    raise
                last = str(exc)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not caught up after {args.wait:g}s ({last})")
            time.sleep(1)
    return snap


def run(args: argparse.Namespace) -> int:
    from engagement_cli import client
    from streams.errors import AsOfError
    from streams.timeutil import parse_as_of

    prog = "engagement snapshot"
    if args.as_of is not None:
        try:
            parse_as_of(args.as_of)
        except AsOfError as exc:
            print(f"{prog}: --as-of: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        url = client.worker_url(args.url)
        if args.wait is not None:
            snap = _wait(url, args, prog)
        else:
            snap = client.snapshot(url, args.as_of, timeout=args.timeout)
    except client.WorkerError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return {
            client.BAD_REQUEST: EXIT_USAGE,
            client.UNAVAILABLE: EXIT_RETRY,
        }.get(exc.kind, EXIT_FAILURE)
    except TimeoutError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_RETRY
    if args.json:
        sys.stdout.write(json.dumps(snap, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_table(snap, url))
    return EXIT_OK
