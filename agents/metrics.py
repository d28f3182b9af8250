"""Prometheus exposition of the partitions a worker owns: `GET /metrics`.

`EngagementCollector` is a custom collector: at each scrape it reads the partitions the worker
owns *now* (`worker.user_parts`, `worker.acct_parts`), computes their merged `Partial` at
T = `worker.now()` (the computation behind /partials) and exports every count of it. A partition
that leaves the worker in a rebalance leaves no stale series behind.

Exported are counts, never ratios: each snapshot value is a ratio of sums over workers of these
series (docs/metrics.md, column "Prometheus series"), so recording rules compute the global KPI.
Windowed counts are gauges (they go down as time passes); the histograms are built at scrape
time over the same windows (use them without rate()). Pipeline counts are counters.

Label values come from fixed sets (signals, reject reasons, social actions, the configured
funnel steps) or from the allow-lists `[metrics] touchpoints` and `features` of the metric
configuration; any other touchpoint or feature is exported as "other", and survey answers
without a touchpoint as "none", so cardinality is bounded whatever the records say.

Nothing here registers into the global default registry: `worker_registry()` builds the
worker's own `CollectorRegistry()` (agents/worker.py, `Worker.registry`) with this collector and
prometheus_client's process, platform and GC collectors (process_resident_memory_bytes,
process_cpu_seconds_total, process_open_fds, python_gc_*, python_info): the worker's own health,
under the names every Prometheus setup knows.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from streams import native_live
from streams.engine import SIGNALS, Partial, SurveyCounts
from streams.records import REJECT_REASONS, SOCIAL_ACTIONS
from streams.timeutil import NS, Instant

log = logging.getLogger("engagement.metrics")

OTHER = "other"  # label value of a touchpoint or feature outside its allow-list
NO_TOUCHPOINT = "none"  # label value of the survey answers without a touchpoint

# Histogram bucket upper bounds, in seconds (le="0" also holds the negative durations the
# catalogue keeps as they are; +Inf is added).
TTFV_BUCKETS: tuple[int, ...] = (
    0, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200,
    86400, 172800, 259200, 604800, 1209600, 2592000,
)  # fmt: skip
SESSION_BUCKETS: tuple[int, ...] = (
    0, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400,
)  # fmt: skip
RESOLUTION_BUCKETS: tuple[int, ...] = (
    0, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200,
    86400, 172800, 259200, 604800, 1209600, 2592000,
)  # fmt: skip
HEALTH_BUCKETS: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)

# The classic text format, which generate_latest writes. Without "; charset=utf-8": aiohttp (the
# Faust web driver) refuses a charset inside content_type, and the format is UTF-8 anyway.
CONTENT_TYPE = "text/plain; version=0.0.4"

# (survey, window label, index in SurveyCounts lists) for every survey count of the catalogue
_CSAT_WINDOWS = (("1h", 0), ("24h", 1), ("7d", 2))
_NPS_CES_WINDOWS = (("7d", 0), ("30d", 1))
_SURVEY_FIELDS = ("csat_n", "csat_pos", "nps_n", "nps_pro", "nps_det", "ces_n", "ces_sum")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("engagement-metrics")
    except Exception:
        return "unknown"


def add_process_collectors(reg: Any) -> Any:
    """Register in `reg` prometheus_client's collectors of this process: resident memory, CPU,
    open file descriptors (ProcessCollector), GC (GCCollector), Python version
    (PlatformCollector). Returns `reg`."""
    from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    return reg


def worker_registry(worker: Any) -> Any:
    """A new registry with the worker's series (EngagementCollector) and the process
    collectors (add_process_collectors)."""
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry()
    reg.register(EngagementCollector(worker))
    return add_process_collectors(reg)


def exposition(registry: Any) -> tuple[bytes, str]:
    """The body and content type of GET /metrics for `registry`."""
    return generate_latest(registry), CONTENT_TYPE


def fold(value: str, allowed: Iterable[str]) -> str:
    """The label value of `value`: itself when allow-listed, else "other"."""
    return value if value in allowed else OTHER


def _seconds(ns: Instant) -> float:
    return float(Fraction(ns) / NS)


def _histogram(
    name: str, doc: str, values_ns: Iterable[Instant], bounds: Sequence[int], scale: int = NS
) -> HistogramMetricFamily:
    """A histogram of exact values (ns, or points with scale=1): cumulative buckets, sum."""
    xs = sorted(values_ns)
    buckets: list[tuple[str, float]] = [
        (str(b), float(bisect.bisect_right(xs, b * scale))) for b in bounds
    ]
    buckets.append(("+Inf", float(len(xs))))
    total = float(Fraction(sum(xs)) / scale)
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


def _minus(total: SurveyCounts, parts: Iterable[SurveyCounts]) -> SurveyCounts:
    rest = SurveyCounts()
    rest.merge(total)
    for c in parts:
        for name in _SURVEY_FIELDS:
            a, b = getattr(rest, name), getattr(c, name)
            for i in range(len(a)):
                a[i] -= b[i]
    return rest


class EngagementCollector(Collector):
    """The series of docs/metrics.md for the partitions `worker` owns at scrape time.

    `worker` is an `agents.worker.Worker` or any object with the same attributes: `s` (settings:
    `config`, `worker_id`, `app_id`), `user_parts`, `acct_parts`, `now()`, `stats`, and
    optionally `intake_consumer` and `app` (for consumer lag).
    """

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.version = _version()

    # ---- the collector -------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        w = self.worker
        users = sorted(w.user_parts.items())
        accts = sorted(w.acct_parts.items())
        t = w.now()
        total = Partial()
        for _, part in users:
            total.merge(part.engine.partial(t))
        for _, part_a in accts:
            total.merge(part_a.engine.partial(t))
        yield from self._worker(w, len(users), len(accts), t)
        yield from self._pipeline(users)
        yield from self._lag(w)
        yield from self._activity(total)
        yield from self._surveys(total)
        yield from self._onboarding(total)
        yield from self._commerce(total)
        yield from self._web_support(total)
        yield from self._health_signals(total)

    # ---- the worker and the pipeline -----------------------------------------------------------

    def _worker(self, w: Any, n_users: int, n_accts: int, t: Instant) -> Iterator[Metric]:
        s = w.s
        yield InfoMetricFamily(
            "engagement_worker",
            "this worker process (its id, Faust app id and package version)",
            value={"worker": str(s.worker_id), "app_id": str(s.app_id), "version": self.version},
        )
        owned = GaugeMetricFamily(
            "engagement_partitions_owned",
            "partitions whose state this worker holds (kind: user or account partitions)",
            labels=["kind"],
        )
        owned.add_metric(["user"], n_users)
        owned.add_metric(["account"], n_accts)
        yield owned
        yield GaugeMetricFamily(
            "engagement_as_of_timestamp_seconds",
            "the instant T (unix seconds) as of which the windowed series of this scrape count",
            value=_seconds(t),
        )
        stats = w.stats
        yield CounterMetricFamily(
            "engagement_records_processed",
            "records in the micro-batches the users stage of this process has run (forwarded "
            "and redelivered records included)",
            value=stats.get("records", 0),
        )
        yield CounterMetricFamily(
            "engagement_batches_processed",
            "micro-batches the users stage of this process has run",
            value=stats.get("batches", 0),
        )
        yield CounterMetricFamily(
            "engagement_records_forwarded",
            "records the users stage of this process forwarded to the partition that owns their "
            "user (keyed to another partition by their producer; each is read twice)",
            value=stats.get("forwarded", 0),
        )
        yield CounterMetricFamily(
            "engagement_intake_records",
            "records the intake stage of this process has read from the input topics",
            value=stats.get("intake_records", 0),
        )
        heap = native_live.core_heap_bytes()
        if heap is not None:
            yield GaugeMetricFamily(
                "engagement_core_heap_bytes",
                "bytes the compiled core of this process holds on the heap (its users and "
                "customers, the partials kept between asks); the rest of "
                "process_resident_memory_bytes is RocksDB, Python and the Kafka clients",
                value=heap,
            )
        yield from self._epochs(w)
        delays = getattr(w, "delays", None)
        if delays is not None:
            yield HistogramMetricFamily(
                "engagement_record_delay_seconds",
                "seconds from a record's Kafka timestamp to its micro-batch applied by the users "
                "stage of this process (when /snapshot counts it); each record once, in the "
                "partition owning its user (agents/delays.py)",
                buckets=[(le, float(n)) for le, n in delays.cumulative()],
                sum_value=delays.sum_ms / 1000,
            )

    def _epochs(self, w: Any) -> Iterator[Metric]:
        """The persistence protocol's work per stage (agents/epoch.py `EpochCommitter.stats`)."""
        stages = [s for s in (getattr(w, "users", None), getattr(w, "accounts", None)) if s]
        committers = [s.epochs for s in stages if hasattr(s, "epochs")]
        if not committers:
            return
        families = [
            ("epochs", "engagement_epochs_committed", "epochs committed (persisted, their "
             "input acknowledged), per stage"),
            ("entities", "engagement_epoch_entities_written", "entities (users or customers) "
             "written by the epochs committed, each once per epoch however often it changed"),
            ("writes", "engagement_epoch_writes", "table writes of the epochs committed (meta, "
             "event ids, entities, deletions, applied markers), to the changelog and the store"),
            ("close_seconds", "engagement_epoch_serialize_seconds", "seconds spent serializing "
             "epochs' writes when they closed (on the event loop)"),
            ("commit_seconds", "engagement_epoch_commit_seconds", "seconds from an epoch's "
             "commit starting to its input acknowledged (side outputs, changelog, store)"),
        ]  # fmt: skip
        for key, name, doc in families:
            fam = CounterMetricFamily(name, doc, labels=["stage"])
            for c in committers:
                fam.add_metric([c.stage], c.stats.get(key, 0))
            yield fam

    def _pipeline(self, users: list[tuple[int, Any]]) -> Iterator[Metric]:
        acc = CounterMetricFamily(
            "engagement_records_accepted",
            "records accepted, per user partition (snapshot key accepted = the sum)",
            labels=["partition"],
        )
        dup = CounterMetricFamily(
            "engagement_records_duplicate",
            "duplicate records ignored, per user partition (snapshot key duplicates = the sum)",
            labels=["partition"],
        )
        rej = CounterMetricFamily(
            "engagement_records_rejected",
            "records rejected, per user partition and reason (snapshot key rejected)",
            labels=["partition", "reason"],
        )
        for p, part in users:
            meta = part.meta
            acc.add_metric([str(p)], meta.accepted)
            dup.add_metric([str(p)], meta.duplicates)
            for reason in REJECT_REASONS:
                rej.add_metric([str(p), reason], meta.rejected.get(reason, 0))
        yield acc
        yield dup
        yield rej

    def _lag(self, w: Any) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "engagement_consumer_lag_records",
            "records on the broker not yet consumed, per stage and topic-partition this worker "
            "consumes: last known high watermark minus the intake's position, or minus the "
            "offset the users/accounts agent committed (a record of those topics is a "
            "micro-batch or a list of account facts); absent while not known",
            labels=["stage", "topic", "partition"],
        )
        for stage, topic, partition, n in consumer_lags(w):
            lag.add_metric([stage, topic, str(partition)], n)
        yield lag

    # ---- the metric families -------------------------------------------------------------------

    def _activity(self, p: Partial) -> Iterator[Metric]:
        cfg = self.worker.s.config
        active = GaugeMetricFamily(
            "engagement_active_users",
            "distinct active users in the calendar-day window: 1d = D0 (dau), 7d = D0-6..D0 "
            "(wau), 30d = D0-29..D0 (mau)",
            labels=["window"],
        )
        for window, n in (("1d", p.dau), ("7d", p.wau), ("30d", p.mau)):
            active.add_metric([window], n)
        yield active
        life = GaugeMetricFamily(
            "engagement_lifecycle_users",
            "users active on D0 by lifecycle state (new + returning + resurrecting = dau); "
            "dormant: active on D0-1 and not on D0",
            labels=["state"],
        )
        for state, n in (
            ("new", p.new),
            ("returning", p.returning),
            ("resurrecting", p.resurrecting),
            ("dormant", p.dormant_lifecycle),
        ):
            life.add_metric([state], n)
        yield life
        allowed = cfg.metric_features
        feats = dict.fromkeys((*allowed, OTHER), 0)
        for name, n in p.features.items():
            feats[fold(name, allowed)] += n
        feat = GaugeMetricFamily(
            "engagement_feature_users",
            "users with a feature_used of the feature on D0-29..D0; features outside the "
            "allow-list add up under feature=other (a sum of per-feature counts)",
            labels=["feature"],
        )
        for name, n in feats.items():
            feat.add_metric([name], n)
        yield feat

    def _surveys(self, p: Partial) -> Iterator[Metric]:
        allowed = self.worker.s.config.metric_touchpoints
        by: dict[str, SurveyCounts] = {tp: SurveyCounts() for tp in (*allowed, OTHER)}
        for tp, c in p.by_tp.items():
            by[fold(tp, allowed)].merge(c)
        by[NO_TOUCHPOINT] = _minus(p.surveys, p.by_tp.values())
        labels = ["window", "touchpoint"]
        responses = GaugeMetricFamily(
            "engagement_survey_responses",
            "survey answers in the hour window, by survey and touchpoint (none: no touchpoint)",
            labels=["survey", *labels],
        )
        positive = GaugeMetricFamily(
            "engagement_csat_positive_responses",
            "CSAT answers scoring 4 or 5 in the hour window, by touchpoint",
            labels=labels,
        )
        promoters = GaugeMetricFamily(
            "engagement_nps_promoter_responses",
            "NPS answers scoring 9 or 10 in the hour window, by touchpoint",
            labels=labels,
        )
        detractors = GaugeMetricFamily(
            "engagement_nps_detractor_responses",
            "NPS answers scoring 0 to 6 in the hour window, by touchpoint",
            labels=labels,
        )
        ces_points = GaugeMetricFamily(
            "engagement_ces_score_points",
            "sum of the CES scores (1-7) answered in the hour window, by touchpoint",
            labels=labels,
        )
        for tp, c in by.items():
            for window, i in _CSAT_WINDOWS:
                responses.add_metric(["csat", window, tp], c.csat_n[i])
                positive.add_metric([window, tp], c.csat_pos[i])
            for window, i in _NPS_CES_WINDOWS:
                responses.add_metric(["nps", window, tp], c.nps_n[i])
                promoters.add_metric([window, tp], c.nps_pro[i])
                detractors.add_metric([window, tp], c.nps_det[i])
            for window, i in _NPS_CES_WINDOWS:
                responses.add_metric(["ces", window, tp], c.ces_n[i])
                ces_points.add_metric([window, tp], c.ces_sum[i])
        yield from (responses, positive, promoters, detractors, ces_points)

    def _onboarding(self, p: Partial) -> Iterator[Metric]:
        cfg = self.worker.s.config
        yield GaugeMetricFamily(
            "engagement_first_week_cohort_users",
            "the mature cohort: users whose signup day is in D0-13..D0-7",
            value=p.mature,
        )
        yield GaugeMetricFamily(
            "engagement_first_week_activated_users",
            "users of the mature cohort with every activation event in [S, S+7d)",
            value=p.activated,
        )
        yield GaugeMetricFamily(
            "engagement_first_week_returned_users",
            "users of the mature cohort active on a later day than their signup day, before S+7d",
            value=p.returned,
        )
        yield _histogram(
            "engagement_time_to_first_value_seconds",
            "time from signup to the first value event, of the users who signed up in "
            "(T-30d, T] and reached it",
            p.ttfv,
            TTFV_BUCKETS,
        )
        funnel = GaugeMetricFamily(
            "engagement_funnel_reached_users",
            "users who signed up in (T-30d, T] and reached the onboarding step (every "
            "configured step)",
            labels=["step"],
        )
        for step in cfg.funnel_steps:
            funnel.add_metric([step], p.funnel.get(step, 0))
        yield funnel
        cohort = GaugeMetricFamily(
            "engagement_retention_cohort_users",
            "day-N retention cohort: users whose signup day is in D0-N-7..D0-N-1",
            labels=["day"],
        )
        kept = GaugeMetricFamily(
            "engagement_retention_retained_users",
            "users of the day-N retention cohort active on their signup day + N",
            labels=["day"],
        )
        for i, n in enumerate((1, 7, 30)):
            cohort.add_metric([str(n)], p.ret_cohort[i])
            kept.add_metric([str(n)], p.ret_kept[i])
        yield cohort
        yield kept

    def _commerce(self, p: Partial) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "engagement_subscribers", "customers subscribed at T", value=p.subscribers
        )
        yield GaugeMetricFamily(
            "engagement_subscribers_period_start",
            "customers subscribed at T-30d (the start of the churn period)",
            value=p.sub_start,
        )
        yield GaugeMetricFamily(
            "engagement_subscribers_lost",
            "customers subscribed at T-30d and not at T",
            value=p.sub_lost,
        )
        yield GaugeMetricFamily(
            "engagement_subscribers_new",
            "customers subscribed at T and not at T-30d",
            value=p.sub_new,
        )
        orders = GaugeMetricFamily(
            "engagement_orders", "orders whose ts is in the hour window", labels=["window"]
        )
        orders.add_metric(["90d"], p.orders_90)
        yield orders
        revenue = GaugeMetricFamily(
            "engagement_revenue",
            "sum of the amounts of the orders in the hour window (the amounts as sent)",
            labels=["window"],
        )
        revenue.add_metric(["30d"], math.fsum(p.revenue_30))
        revenue.add_metric(["90d"], math.fsum(p.revenue_90))
        yield revenue
        buyers = GaugeMetricFamily(
            "engagement_ordering_customers",
            "customers with at least one order in the hour window",
            labels=["window"],
        )
        buyers.add_metric(["30d"], p.customers_30)
        buyers.add_metric(["90d"], p.customers_1)
        yield buyers
        repeat = GaugeMetricFamily(
            "engagement_repeat_customers",
            "customers with at least two orders in the hour window",
            labels=["window"],
        )
        repeat.add_metric(["90d"], p.customers_2)
        yield repeat
        returned = GaugeMetricFamily(
            "engagement_returned_orders",
            "distinct orders whose first return is in the hour window",
            labels=["window"],
        )
        returned.add_metric(["90d"], p.returns)
        yield returned

    def _web_support(self, p: Partial) -> Iterator[Metric]:
        for name, doc, n in (
            ("engagement_sessions", "sessions whose end is in the hour window", p.sessions),
            (
                "engagement_bounced_sessions",
                "sessions ended in the hour window with exactly one page view",
                p.bounces,
            ),
            ("engagement_clicks", "click events in the hour window", p.clicks),
            ("engagement_impressions", "impression events in the hour window", p.impressions),
            (
                "engagement_tickets_opened",
                "tickets whose opening is in the hour window",
                p.tickets_opened,
            ),
        ):
            g = GaugeMetricFamily(name, doc, labels=["window"])
            g.add_metric(["24h"], n)
            yield g
        yield _histogram(
            "engagement_session_duration_seconds",
            "duration (end - start) of the sessions ended in (T-24h, T] whose start was seen",
            p.session_durs,
            SESSION_BUCKETS,
        )
        social = GaugeMetricFamily(
            "engagement_social_interactions",
            "social_interaction events in the hour window, by action",
            labels=["window", "action"],
        )
        for action in SOCIAL_ACTIONS:
            social.add_metric(["24h", action], p.social.get(action, 0))
        yield social
        yield GaugeMetricFamily(
            "engagement_open_tickets",
            "tickets opened by T and not resolved by T",
            value=p.open_tickets,
        )
        yield _histogram(
            "engagement_ticket_resolution_seconds",
            "resolution time (resolution - opening) of the tickets resolved in (T-7d, T] whose "
            "opening was seen",
            p.resolution_durs,
            RESOLUTION_BUCKETS,
        )

    def _health_signals(self, p: Partial) -> Iterator[Metric]:
        health = sorted(p.health)
        buckets: list[tuple[str, float]] = [
            (str(b), float(bisect.bisect_right(health, b))) for b in HEALTH_BUCKETS
        ]
        buckets.append(("+Inf", float(len(health))))
        yield HistogramMetricFamily(
            "engagement_customer_health_score",
            "health score (0-100) of every customer with an accepted record by T",
            buckets=buckets,
            sum_value=math.fsum(health),
        )
        yield GaugeMetricFamily(
            "engagement_customers_at_risk",
            "customers with a health score below 40",
            value=p.at_risk,
        )
        sig = GaugeMetricFamily(
            "engagement_churn_signals",
            "churn signals whose instant is in the hour window, by signal",
            labels=["window", "signal"],
        )
        for window, counts in (("1h", p.sig1), ("24h", p.sig24)):
            for s in SIGNALS:
                sig.add_metric([window, s], counts.get(s, 0))
        yield sig


# ---- consumer lag, from what the consumers already know (never a request to the broker) -------


def _position(consumer: Any, tp: Any) -> int | None:
    """The fetch position of an aiokafka consumer, without awaiting (None when unknown).

    aiokafka's `position()` is a coroutine that may wait for an offset reset; the position it
    returns once known is the assignment's state, read here directly."""
    assignment = consumer._subscription.subscription.assignment
    state = assignment.state_value(tp) if assignment is not None else None
    if state is None or not state.has_valid_position:
        return None
    return int(state.position)


def _aiokafka_lags(consumer: Any) -> Iterator[tuple[str, int, int]]:
    for tp in sorted(consumer.assignment()):
        try:
            hw = consumer.highwater(tp)
            pos = _position(consumer, tp)
        except Exception:  # unassigned meanwhile, or a library that moved its internals
            continue
        if hw is not None and pos is not None:
            yield tp.topic, tp.partition, max(0, int(hw) - pos)


def _faust_lags(w: Any) -> Iterator[tuple[str, str, int, int]]:
    app: Any = getattr(w, "app", None)
    consumer = getattr(app, "_consumer", None)  # never create one at scrape time
    if consumer is None:
        return
    stages = {w.batches_topic.get_topic_name(): "users", w.facts_topic.get_topic_name(): "accounts"}
    # The next offset to process: Faust's committed offset (processed, acknowledged and
    # committed, every broker_commit_interval); else the last offset read into the stream's
    # buffer, + 1 (an underestimate: the buffer holds thousands of events); else the position.
    committed = getattr(consumer, "_committed_offset", {})
    read = getattr(consumer, "_read_offset", {})
    thread_consumer = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    for tp in sorted(app.assignor.assigned_actives()):
        stage = stages.get(tp.topic)
        if stage is None:
            continue
        try:
            hw = consumer.highwater(tp)
            nxt = committed.get(tp)
            if nxt is None:
                last = read.get(tp)
                nxt = last + 1 if last is not None else None
            if nxt is None and thread_consumer is not None:
                nxt = _position(thread_consumer, tp)
        except Exception:
            continue
        if hw is not None and nxt is not None:
            yield stage, tp.topic, tp.partition, max(0, int(hw) - int(nxt))


def consumer_lags(w: Any) -> list[tuple[str, str, int, int]]:
    """(stage, topic, partition, lag) of the intake consumer and the Faust consumer; cached
    state only, so a slow or absent broker never slows or fails a scrape."""
    out: list[tuple[str, str, int, int]] = []
    intake = getattr(w, "intake_consumer", None)
    if intake is not None:
        try:
            out.extend(("intake", topic, p, n) for topic, p, n in _aiokafka_lags(intake))
        except Exception:
            log.debug("intake consumer lag unavailable", exc_info=True)
    try:
        out.extend(_faust_lags(w))
    except Exception:
        log.debug("Faust consumer lag unavailable", exc_info=True)
    return out
