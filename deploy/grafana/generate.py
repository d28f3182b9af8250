"""Generate the Grafana dashboards of deploy/grafana/dashboards/ from code.

Usage: python deploy/grafana/generate.py [--check]

Five dashboards (overview, onboarding, retention and churn, support and commerce, pipeline
health), built with Grafana's own Python SDK (grafana-foundation-sdk, pinned in pyproject.toml
to the Grafana of docker-compose.yml), written as JSON and loaded by Grafana's file provider
(deploy/grafana/provisioning/dashboards/engagement.yml, mounted by docker-compose.yml).

Every query reads a recording rule of deploy/prometheus/generate.py (the rule names are looked up
in that generator's output, so a renamed rule fails here, not in Grafana) or a raw series of
docs/metrics.md section 7. Every dashboard has three variables: `datasource` (any Prometheus
data source), `namespace` (Kubernetes; "All" matches series without the label, as on the local
stack) and `job` (one deployment: the scrape jobs of the workers that rules.toml's
worker_selector matches). Every series a query selects carries `job="$job"` (and
`namespace=~"$namespace"` where the series has it), added by with_variables(), so a
Prometheus that scrapes two deployments shows one at a time. Those are the only variables
($__rate_interval, $__range, ... are not used): `panel_queries()` lists every (dashboard, panel
title, expr) with the variables replaced by a job's values, plain PromQL that Prometheus
evaluates as it is; tests/unit/test_grafana.py checks them, and the end-to-end test runs them
against a real Prometheus. Panels tied to an alert link its runbook (rules.toml's runbook_base).

The committed JSON files must equal what this script writes: --check (and the unit test) fails
when they differ.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    prometheus,
    stat,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = HERE / "dashboards"
PROM_GENERATOR = REPO / "deploy" / "prometheus" / "generate.py"

# The datasource of deploy/grafana/provisioning/datasources/prometheus.yml: the default of the
# `datasource` variable that every panel and query uses.
DATASOURCE_UID = "prometheus"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "engagement"

# The series names a query selects: recording rules (engagement:...), the workers' series, `up`
# and the process collectors' series (process_..., python_...). Not preceded by a word
# character, ':' or a quote (label values), and not a function (followed by "(").
_SERIES = re.compile(
    r'(?<![\w:"])((?:engagement[_:]|process_|python_)[\w:]*|up\b)(?!\s*\()(\{([^}]*)\})?'
)


def with_variables(expr: str, rule_labels: tuple[str, ...] = ("job",)) -> str:
    """`expr` with the dashboard variables added to every series it selects: job="$job" and
    namespace=~"$namespace" on the workers' series and `up`; on recording rules (which keep
    only rules.toml's deployment_labels) only the matchers of those labels."""

    def add(m: re.Match[str]) -> str:
        name, inner = m.group(1), m.group(3) or ""
        labels = rule_labels if ":" in name else ("namespace", "job")
        mine = [VARIABLE_MATCHERS[label] for label in ("namespace", "job") if label in labels]
        return f"{name}{{{', '.join([*mine, *([inner] if inner else [])])}}}"

    return _SERIES.sub(add, expr)


VARIABLE_MATCHERS = {"job": 'job="$job"', "namespace": 'namespace=~"$namespace"'}

# Raw series of docs/metrics.md section 7 that the dashboards read directly (the KPIs come from
# recording rules). Counters are read with rate() over the dead-letter window of rules.toml.
RAW = {
    "processed": "engagement_records_processed_total",
    "intake": "engagement_intake_records_total",
    "forwarded": "engagement_records_forwarded_total",
    "delay": "engagement_record_delay_seconds_bucket",
    "batches": "engagement_batches_processed_total",
    "duplicates": "engagement_records_duplicate_total",
    "partitions": "engagement_partitions_owned",
    "info": "engagement_worker_info",
    "as_of": "engagement_as_of_timestamp_seconds",
    "ttfv": "engagement_time_to_first_value_seconds",
    "health": "engagement_customer_health_score",
    # prometheus_client's process collector on the worker's /metrics (agents/metrics.py).
    "memory": "process_resident_memory_bytes",
    "cpu": "process_cpu_seconds_total",
    "fds": "process_open_fds",
}

HISTOGRAM_NOTE = (
    " A median estimated by histogram_quantile(0.5, ...) over the histogram's cumulative "
    "buckets (linear interpolation within the bucket that holds it): an approximation, "
    "not the exact figure of /snapshot."
)


def prometheus_generator() -> ModuleType:
    """deploy/prometheus/generate.py as a module (deploy/ is not a package)."""
    name = "engagement_prometheus_generate"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, PROM_GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class Rules:
    """The recording rules deploy/prometheus/generate.py writes for a rules.toml config."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        gen = prometheus_generator()
        groups = [gen.activity_group(), gen.surveys_group(), gen.business_group()]
        groups.append(gen.pipeline_group(cfg))
        self.by_name = {r.name: r for g in groups for r in g.rules}
        self.cfg = cfg
        self.labels = tuple(cfg["common"].get("deployment_labels", ["job"]))
        self.selector = cfg["common"].get("worker_selector", "")

    def runbook(self, alert: str) -> str:
        """The runbook URL of an alert, as its runbook_url annotation has it."""
        return f"{self.cfg['common']['runbook_base']}/{alert}.md"

    def __call__(self, name: str) -> str:
        if name not in self.by_name:
            raise KeyError(f"no recording rule {name!r} in deploy/prometheus/generate.py")
        return name

    def comment(self, name: str) -> str:
        return str(self.by_name[self(name)].comment)

    def alert(self, name: str) -> dict[str, Any]:
        return dict(self.cfg["alerts"][name])


# --- panels ------------------------------------------------------------------------------------


@dataclass
class Q:
    expr: str
    legend: str = ""


@dataclass
class P:
    """A panel: kind is stat, timeseries or bargauge; w and h in grid units (24 wide)."""

    kind: str
    title: str
    queries: list[Q]
    description: str
    unit: str = "short"
    w: int = 6
    h: int = 4
    decimals: int | None = None
    min: float | None = None
    max: float | None = None
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)
    # (title, url): the runbooks of the alerts this panel shows the condition of.
    links: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Row:
    title: str
    panels: list[P]


@dataclass
class Board:
    uid: str
    title: str
    description: str
    rows: list[Row]
    # Set by boards(): the deployment labels of the recording rules, the worker selector.
    rule_labels: tuple[str, ...] = ("job",)
    selector: str = ""


def _build_panel(p: P, panel_id: int, rule_labels: tuple[str, ...]) -> Any:
    builder: Any
    if p.kind == "stat":
        builder = (
            stat.Panel()
            .graph_mode(cm.BigValueGraphMode.AREA)
            .color_mode(cm.BigValueColorMode.VALUE)
            .text_mode(cm.BigValueTextMode.AUTO)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        )
    elif p.kind == "timeseries":
        builder = (
            timeseries.Panel()
            .line_width(1)
            .fill_opacity(10)
            .show_points(cm.VisibilityMode.NEVER)
            .legend(
                common.VizLegendOptions()
                .show_legend(True)
                .display_mode(cm.LegendDisplayMode.LIST)
                .placement(cm.LegendPlacement.BOTTOM)
            )
            .tooltip(common.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI))
        )
    elif p.kind == "bargauge":
        builder = (
            bargauge.Panel()
            .display_mode(cm.BarGaugeDisplayMode.BASIC)
            .orientation(cm.VizOrientation.HORIZONTAL)
            .show_unfilled(True)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        )
    else:
        raise ValueError(f"unknown panel kind {p.kind!r}")
    builder = (
        builder.id(panel_id)
        .title(p.title)
        .description(p.description)
        .datasource(DATASOURCE)
        .unit(p.unit)
        .span(p.w)
        .height(p.h)
    )
    if p.links:
        builder = builder.links(
            [dashboard.DashboardLink(title).url(url).target_blank(True) for title, url in p.links]
        )
    if p.decimals is not None:
        builder = builder.decimals(p.decimals)
    if p.min is not None:
        builder = builder.min(p.min)
    if p.max is not None:
        builder = builder.max(p.max)
    steps = p.thresholds or [(None, "green")]
    builder = builder.thresholds(
        dashboard.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )
    for i, q in enumerate(p.queries):
        target = (
            prometheus.Dataquery()
            .expr(with_variables(q.expr, rule_labels))
            .ref_id(chr(ord("A") + i))
            .datasource(DATASOURCE)
        )
        # A bar gauge shows the latest values; stats (with their sparkline) and time series
        # need the range.
        target = target.instant() if p.kind == "bargauge" else target.range()
        if q.legend:
            target = target.legend_format(q.legend)
        builder = builder.with_target(target)
    return builder


def _variables(board: Board) -> list[Any]:
    """datasource, namespace and job: every query of the board uses them (with_variables)."""
    info = RAW["info"]
    sel = f"{board.selector}, " if board.selector else ""
    return [
        dashboard.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(dm.VariableOption(selected=True, text="Prometheus", value=DATASOURCE_UID)),
        dashboard.QueryVariable("namespace")
        .label("Namespace")
        .description(
            "Kubernetes namespace of the workers; All (the only choice where the series have "
            "no namespace label, as on the local stack) matches every one."
        )
        .datasource(DATASOURCE)
        .query(f"label_values({info}{{{sel.removesuffix(', ')}}}, namespace)")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(selected=True, text="All", value="$__all")),
        dashboard.QueryVariable("job")
        .label("Job")
        .description(
            "The deployment: the scrape job of its workers (rules.toml: worker_selector). "
            "One at a time, so two deployments are never added together."
        )
        .datasource(DATASOURCE)
        .query(f'label_values({info}{{{sel}namespace=~"$namespace"}}, job)')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .include_all(False)
        .multi(False),
    ]


def _build(board: Board) -> dict[str, Any]:
    builder = (
        dashboard.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags([TAG, "generated"])
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .readonly()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard.DashboardLink("Engagement dashboards")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .keep_time(True)
        )
    )
    for variable in _variables(board):
        builder = builder.with_variable(variable)
    panel_id = 0
    for row in board.rows:
        panel_id += 1
        builder = builder.with_row(dashboard.Row(row.title).id(panel_id))
        for p in row.panels:
            panel_id += 1
            builder = builder.with_panel(_build_panel(p, panel_id, board.rule_labels))
    data = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    assert isinstance(data, dict)
    return data


# --- the dashboards ----------------------------------------------------------------------------


def _pct(title: str, expr: str, description: str, **kw: Any) -> P:
    kw.setdefault("decimals", 1)
    return P("stat", title, [Q(expr)], description, unit="percent", **kw)


def overview(r: Rules) -> Board:
    au = [
        Q(r("engagement:dau:users"), "DAU"),
        Q(r("engagement:wau:users"), "WAU"),
        Q(r("engagement:mau:users"), "MAU"),
    ]
    csat = [Q(r(f"engagement:csat_{w}:pct"), f"CSAT {w}") for w in ("1h", "24h", "7d")]
    nps = [Q(r(f"engagement:nps_{w}:score"), f"NPS {w}") for w in ("7d", "30d")]
    ces = [Q(r(f"engagement:ces_{w}:avg"), f"CES {w}") for w in ("7d", "30d")]
    calendar = "calendar days in the configured time zone, D0 = today"
    return Board(
        "engagement-overview",
        "Engagement / Overview",
        "Active users, stickiness and live satisfaction (docs/metrics.md section 3).",
        [
            Row(
                "Active users",
                [
                    P("stat", "DAU", [au[0]], f"Distinct active users on D0 ({calendar})."),
                    P("stat", "WAU", [au[1]], f"Distinct active users on D0-6 .. D0 ({calendar})."),
                    P(
                        "stat",
                        "MAU",
                        [au[2]],
                        f"Distinct active users on D0-29 .. D0 ({calendar}).",
                    ),
                    _pct(
                        "Stickiness",
                        r("engagement:stickiness:pct"),
                        "DAU / MAU x 100 (stickiness_pct).",
                    ),
                    P(
                        "timeseries",
                        "Active users over time",
                        au,
                        "DAU, WAU and MAU as exported at each scrape (each counts up to 'now').",
                        w=12,
                        h=8,
                    ),
                    P(
                        "timeseries",
                        "Lifecycle of active users",
                        [Q(r("engagement:lifecycle:users"), "{{state}}")],
                        "Users active today: new (signed up today), returning (also active "
                        "yesterday), resurrecting (the rest); new + returning + resurrecting = "
                        "DAU. Dormant: active yesterday, not today.",
                        w=12,
                        h=8,
                    ),
                ],
            ),
            Row(
                "Satisfaction (live)",
                [
                    P(
                        "stat",
                        "CSAT",
                        csat,
                        "Positive CSAT answers (score 4-5) / CSAT answers x 100, over the last "
                        "1h, 24h and 7 days.",
                        unit="percent",
                        w=8,
                        decimals=1,
                        min=0,
                        max=100,
                    ),
                    P(
                        "stat",
                        "NPS",
                        nps,
                        "(promoters - detractors) / NPS answers x 100 over the last 7 and 30 "
                        "days, -100 to 100.",
                        w=8,
                        decimals=1,
                        min=-100,
                        max=100,
                    ),
                    P(
                        "stat",
                        "CES",
                        ces,
                        "Mean customer effort score (1-7) over the last 7 and 30 days.",
                        w=8,
                        decimals=2,
                        min=1,
                        max=7,
                    ),
                    P(
                        "timeseries",
                        "CSAT by touchpoint (24h)",
                        [Q(r("engagement:csat_by_touchpoint_24h:pct"), "{{touchpoint}}")],
                        "CSAT of the last 24h per touchpoint ([metrics] touchpoints; 'other' "
                        "for the rest, 'none' for answers without one). Empty touchpoints "
                        "give no point (0 / 0).",
                        unit="percent",
                        w=8,
                        h=8,
                    ),
                    P(
                        "timeseries",
                        "NPS by touchpoint (30d)",
                        [Q(r("engagement:nps_by_touchpoint_30d:score"), "{{touchpoint}}")],
                        "NPS of the last 30 days per touchpoint.",
                        w=8,
                        h=8,
                    ),
                    P(
                        "timeseries",
                        "Survey answers",
                        [
                            Q(r("engagement:csat_responses_24h:count"), "CSAT answers 24h"),
                            Q(r("engagement:nps_responses_30d:count"), "NPS answers 30d"),
                        ],
                        "How many answers the scores above rest on.",
                        w=8,
                        h=8,
                    ),
                ],
            ),
            Row(
                "Features",
                [
                    P(
                        "bargauge",
                        "Feature adoption (30 days)",
                        [Q(r("engagement:feature_adoption:pct"), "{{feature}}")],
                        "Users of each feature on D0-29 .. D0 / MAU x 100, for the features of "
                        "[metrics] features; 'other' adds up the per-feature counts of every "
                        "other feature (not distinct users).",
                        unit="percent",
                        w=24,
                        h=8,
                        min=0,
                        max=100,
                    ),
                ],
            ),
        ],
    )


def onboarding(r: Rules, funnel_steps: tuple[str, ...]) -> Board:
    reached = r("engagement:funnel_reached:users")
    funnel = [Q(f'{reached}{{step="{s}"}}', s) for s in funnel_steps]
    dropoff = [
        Q(
            f'(1 - {reached}{{step="{b}"}} / ignoring (step) {reached}{{step="{a}"}}) * 100',
            f"{a} -> {b}",
        )
        for a, b in itertools.pairwise(funnel_steps)
    ]
    activation = r("engagement:first_week_activation:pct")
    ret = r("engagement:first_week_return:pct")
    ttfv = r("engagement:ttfv_median_approx:hours")
    cohort = "the mature cohort (users whose signup day is D0-13 .. D0-7: their first week is over)"
    return Board(
        "engagement-onboarding",
        "Engagement / Onboarding",
        "Activation, time to first value and the onboarding funnel (docs/metrics.md section 3).",
        [
            Row(
                "Activation",
                [
                    _pct(
                        "First-week activation",
                        activation,
                        f"Share of {cohort} who did every activation event within 7 days of "
                        "signing up.",
                        w=8,
                    ),
                    _pct(
                        "First-week return",
                        ret,
                        f"Share of {cohort} active again on a later day of their first week.",
                        w=8,
                    ),
                    P(
                        "stat",
                        "Time to first value (median, approx.)",
                        [Q(ttfv)],
                        "Median time from signup to the first value event, in hours."
                        + HISTOGRAM_NOTE
                        + " /snapshot has the exact ttfv_median_hours.",
                        unit="h",
                        w=8,
                        decimals=1,
                    ),
                    P(
                        "timeseries",
                        "Activation and return over time",
                        [Q(activation, "activation"), Q(ret, "first-week return")],
                        "First-week activation and return as exported at each scrape.",
                        unit="percent",
                        w=12,
                        h=8,
                        min=0,
                        max=100,
                    ),
                    P(
                        "bargauge",
                        "Time to first value: users within each bucket",
                        [Q(f"sum by (le) ({RAW['ttfv']}_bucket)", "<= {{le}} s")],
                        "Cumulative histogram of the time to first value (seconds): users "
                        "whose first value came within each bucket's bound. The median above is "
                        "read off these buckets by histogram_quantile.",
                        w=12,
                        h=8,
                    ),
                ],
            ),
            Row(
                "Onboarding funnel",
                [
                    P(
                        "bargauge",
                        "Funnel: users who reached each step",
                        funnel,
                        "Users who reached each step of funnel_steps, in funnel order (a "
                        "dashboard generated for the default funnel_steps; regenerate with "
                        "deploy/grafana/generate.py after changing them).",
                        w=12,
                        h=8,
                        min=0,
                    ),
                    P(
                        "bargauge",
                        "Funnel drop-off between steps",
                        dropoff,
                        "1 - users at a step / users at the step before, x 100.",
                        unit="percent",
                        w=12,
                        h=8,
                        min=0,
                        max=100,
                    ),
                ],
            ),
        ],
    )


def retention(r: Rules) -> Board:
    spike = r.alert("EngagementChurnSignalSpike")
    short = spike["short_window"]
    new = r(f"engagement:churn_signals_new_{short}:estimate")
    base = r(f"engagement:churn_signals_baseline_per_{short}:avg")
    at_risk = r("engagement:customers_at_risk:count")
    return Board(
        "engagement-retention",
        "Engagement / Retention and churn",
        "Day-N retention, subscription churn, churn signals and customer health.",
        [
            Row(
                "Retention",
                [
                    P(
                        "stat",
                        "Day-N retention",
                        [Q(r("engagement:retention:pct"), "D{{day}}")],
                        "d1/d7/d30 retention: of the users whose signup day is in "
                        "D0-N-7 .. D0-N-1, the share active on their signup day + N.",
                        unit="percent",
                        w=12,
                        decimals=1,
                    ),
                    P(
                        "timeseries",
                        "Day-N retention over time",
                        [Q(r("engagement:retention:pct"), "D{{day}}")],
                        "Day-N retention as exported at each scrape.",
                        unit="percent",
                        w=12,
                        h=8,
                    ),
                ],
            ),
            Row(
                "Subscriptions",
                [
                    P(
                        "stat",
                        "Subscribers",
                        [Q(r("engagement:subscribers:count"))],
                        "Customers with a running subscription now.",
                        w=8,
                    ),
                    _pct(
                        "Churn rate (30d)",
                        r("engagement:churn_rate_30d:pct"),
                        "Customers subscribed 30 days ago and no longer subscribed now / "
                        "customers subscribed 30 days ago x 100 (churn_rate_pct_30d).",
                        w=8,
                        thresholds=[(None, "green"), (5, "orange"), (10, "red")],
                    ),
                    _pct(
                        "Subscription retention (30d)",
                        r("engagement:retention_rate_30d:pct"),
                        "(subscribers now - new subscribers of the last 30 days) / subscribers "
                        "30 days ago x 100 (retention_rate_pct_30d).",
                        w=8,
                    ),
                ],
            ),
            Row(
                "Churn signals",
                [
                    P(
                        "bargauge",
                        "Churn signals (1h)",
                        [Q(r("engagement:churn_signals_1h:count"), "{{signal}}")],
                        "Signals of the last hour: cancellation, nps_detractor, "
                        "csat_negative, dormant (14 days without activity).",
                        w=8,
                        h=8,
                        min=0,
                    ),
                    P(
                        "bargauge",
                        "Churn signals (24h)",
                        [Q(r("engagement:churn_signals_24h:count"), "{{signal}}")],
                        "Signals of the last 24 hours.",
                        w=8,
                        h=8,
                        min=0,
                    ),
                    P(
                        "timeseries",
                        f"Churn signals: last {short} vs baseline",
                        [
                            Q(new, "{{signal}} last " + short),
                            Q(base, "{{signal}} baseline per " + short),
                        ],
                        f"{r.comment(new)}; baseline: {r.comment(base)}. The alert "
                        f"EngagementChurnSignalSpike fires when the first exceeds "
                        f"{spike['factor']} x the second and {spike['min_count']} signals. "
                        f"Needs {short} of history.",
                        w=8,
                        h=8,
                    ),
                ],
            ),
            Row(
                "Customer health",
                [
                    P(
                        "stat",
                        "Customers at risk",
                        [Q(at_risk)],
                        "Customers whose health score is below 40 (`engagement at-risk` lists "
                        "them).",
                        w=8,
                        thresholds=[(None, "green"), (1, "orange")],
                    ),
                    P(
                        "stat",
                        "Health score (mean)",
                        [Q(r("engagement:health:avg"))],
                        "Mean health score (0-100) over the customers (health_avg).",
                        w=8,
                        decimals=1,
                        min=0,
                        max=100,
                    ),
                    P(
                        "stat",
                        "Health score (median, approx.)",
                        [Q(r("engagement:health_median_approx:score"))],
                        "Median health score (0-100)." + HISTOGRAM_NOTE,
                        w=8,
                        decimals=1,
                        min=0,
                        max=100,
                    ),
                    P(
                        "timeseries",
                        "Customers at risk over time",
                        [Q(at_risk, "at risk")],
                        "Customers with health < 40, as exported at each scrape.",
                        w=12,
                        h=8,
                    ),
                    P(
                        "bargauge",
                        "Health score: customers within each bucket",
                        [Q(f"sum by (le) ({RAW['health']}_bucket)", "<= {{le}}")],
                        "Cumulative histogram of every customer's health score.",
                        w=12,
                        h=8,
                    ),
                ],
            ),
        ],
    )


def support_commerce(r: Rules) -> Board:
    return Board(
        "engagement-support-commerce",
        "Engagement / Support and commerce",
        "Support tickets, orders and revenue, web sessions and social engagement.",
        [
            Row(
                "Support",
                [
                    P(
                        "stat",
                        "Tickets opened (24h)",
                        [Q(r("engagement:tickets_opened_24h:count"))],
                        "Tickets opened in the last 24 hours.",
                    ),
                    P(
                        "stat",
                        "Open tickets",
                        [Q(r("engagement:open_tickets:count"))],
                        "Tickets opened and not resolved now.",
                    ),
                    P(
                        "stat",
                        "Resolution time (mean, 7d)",
                        [Q(r("engagement:avg_resolution_7d:hours"))],
                        "Mean time from opening to resolution of the tickets resolved in the "
                        "last 7 days, in hours (avg_resolution_hours_7d).",
                        unit="h",
                        decimals=1,
                    ),
                    P(
                        "stat",
                        "Resolution time (median, approx., 7d)",
                        [Q(r("engagement:resolution_median_approx_7d:hours"))],
                        "Median resolution time of the tickets resolved in the last 7 days, "
                        "in hours." + HISTOGRAM_NOTE,
                        unit="h",
                        decimals=1,
                    ),
                ],
            ),
            Row(
                "Commerce",
                [
                    P(
                        "stat",
                        "Orders (90d)",
                        [Q(r("engagement:orders_90d:count"))],
                        "Orders of the last 90 days.",
                        w=4,
                    ),
                    P(
                        "stat",
                        "Revenue (90d)",
                        [Q(r("engagement:revenue_90d:sum"))],
                        "Sum of the order amounts of the last 90 days.",
                        w=4,
                        decimals=2,
                    ),
                    P(
                        "stat",
                        "Average order value (90d)",
                        [Q(r("engagement:aov_90d:avg"))],
                        "Revenue / orders over the last 90 days (aov_90d).",
                        w=4,
                        decimals=2,
                    ),
                    _pct(
                        "Repeat purchase rate (90d)",
                        r("engagement:repeat_purchase_rate_90d:pct"),
                        "Customers with 2 or more orders / ordering customers x 100.",
                        w=4,
                    ),
                    _pct(
                        "Return rate (90d)",
                        r("engagement:return_rate_90d:pct"),
                        "Orders returned / orders x 100.",
                        w=4,
                    ),
                    P(
                        "stat",
                        "CLV estimate",
                        [Q(r("engagement:clv_estimate:sum"))],
                        "Revenue per ordering customer over 30 days / the 30-day churn "
                        "fraction (clv_estimate; no value while no subscriber churned).",
                        w=4,
                        decimals=2,
                    ),
                ],
            ),
            Row(
                "Web and social",
                [
                    P(
                        "stat",
                        "Sessions (24h)",
                        [Q(r("engagement:sessions_24h:count"))],
                        "Sessions that ended in the last 24 hours.",
                        w=4,
                    ),
                    P(
                        "stat",
                        "Session duration (mean, 24h)",
                        [Q(r("engagement:avg_session_duration_24h:seconds"))],
                        "Mean session duration (avg_session_duration_s_24h).",
                        unit="s",
                        w=4,
                        decimals=0,
                    ),
                    P(
                        "stat",
                        "Session duration (median, approx., 24h)",
                        [Q(r("engagement:session_duration_median_approx_24h:seconds"))],
                        "Median session duration." + HISTOGRAM_NOTE,
                        unit="s",
                        w=4,
                        decimals=0,
                    ),
                    _pct(
                        "Bounce rate (24h)",
                        r("engagement:bounce_rate_24h:pct"),
                        "Sessions with a single page view / sessions x 100.",
                        w=4,
                    ),
                    _pct(
                        "Click-through rate (24h)",
                        r("engagement:ctr_24h:pct"),
                        "Clicks / impressions x 100.",
                        w=4,
                    ),
                    P(
                        "bargauge",
                        "Social interactions (24h)",
                        [Q(r("engagement:social_interactions_24h:count"), "{{action}}")],
                        "Likes, shares, comments, mentions and saves of the last 24 hours.",
                        w=4,
                        h=8,
                        min=0,
                    ),
                ],
            ),
        ],
    )


def pipeline(r: Rules) -> Board:
    win = r.alert("EngagementDeadLetterRate")["window"]
    lag_win = r.alert("EngagementConsumerLagGrowing")["window"]
    accepted = r(f"engagement:records_accepted:rate{win}")
    rejected = r(f"engagement:records_rejected:rate{win}")
    per_s = f"per second, averaged over {win}"
    return Board(
        "engagement-pipeline",
        "Engagement / Pipeline health",
        "Throughput, dead letters, consumer lag and the workers (docs/metrics.md section 7).",
        [
            Row(
                "Throughput",
                [
                    P(
                        "timeseries",
                        "Records per second",
                        [
                            Q(f"sum(rate({RAW['intake']}[{win}]))", "read (intake)"),
                            Q(f"sum(rate({RAW['processed']}[{win}]))", "processed (users stage)"),
                            Q(accepted, "accepted"),
                            Q(f"sum(rate({RAW['duplicates']}[{win}]))", "duplicates"),
                            Q(f"sum({rejected})", "rejected"),
                        ],
                        f"Records {per_s}: read from the input topics by the intake stage, "
                        "run by the users stage (forwarded and redelivered records included), "
                        "and their outcome.",
                        w=10,
                        h=8,
                    ),
                    P(
                        "timeseries",
                        "Micro-batches per second",
                        [Q(f"sum(rate({RAW['batches']}[{win}]))", "batches")],
                        f"Micro-batches the users stage ran, {per_s}.",
                        w=8,
                        h=8,
                    ),
                    P(
                        "stat",
                        "Records forwarded",
                        [
                            Q(
                                f"sum(rate({RAW['forwarded']}[{win}])) / "
                                f"sum(rate({RAW['intake']}[{win}]))",
                                "forwarded",
                            )
                        ],
                        "Share of the input records keyed to a partition that does not own "
                        "their user, forwarded there (read twice). Above half: a producer does "
                        "not partition like Kafka's Java client (murmur2 of the user id); "
                        "librdkafka clients (confluent-kafka, kcat) need "
                        "`partitioner=murmur2_random` (docs/producers.md).",
                        unit="percentunit",
                        w=6,
                        h=8,
                        decimals=1,
                        thresholds=[(None, "green"), (0.5, "red")],
                    ),
                    P(
                        "timeseries",
                        "Record delay: median and p99 (approx.)",
                        [
                            Q(
                                f"histogram_quantile({q}, sum by (le) "
                                f"(rate({RAW['delay']}[{win}])))",
                                f"p{round(q * 100)}",
                            )
                            for q in (0.5, 0.99)
                        ],
                        "Seconds from a record's timestamp (its producer's clock) to its "
                        "micro-batch applied, when /snapshot counts it "
                        "(engagement_record_delay_seconds)." + HISTOGRAM_NOTE,
                        unit="s",
                        w=24,
                        h=8,
                    ),
                ],
            ),
            Row(
                "Dead letters",
                [
                    P(
                        "timeseries",
                        "Dead letters by reason",
                        [Q(rejected, "{{reason}}")],
                        f"Records rejected (copied to the dead-letters topic) {per_s}, by "
                        "reason. `engagement dead-letters` lists them.",
                        w=16,
                        h=8,
                    ),
                    P(
                        "stat",
                        "Dead-letter ratio",
                        [Q(r(f"engagement:dead_letter:ratio_rate{win}"))],
                        f"{r.comment(f'engagement:dead_letter:ratio_rate{win}')}, over {win}.",
                        unit="percentunit",
                        w=8,
                        h=8,
                        decimals=2,
                        thresholds=[
                            (None, "green"),
                            (r.alert("EngagementDeadLetterRate")["max_fraction"], "red"),
                        ],
                    ),
                ],
            ),
            Row(
                "Consumer lag",
                [
                    P(
                        "timeseries",
                        "Consumer lag by stage and topic",
                        [Q(r("engagement:consumer_lag:records"), "{{stage}} {{topic}}")],
                        "Records (intake) or micro-batches (users, accounts) on the broker not "
                        "yet consumed, per stage and topic, over every partition and worker.",
                        w=12,
                        h=8,
                    ),
                    P(
                        "timeseries",
                        f"Consumer lag growth ({lag_win})",
                        [Q(r(f"engagement:consumer_lag:growth{lag_win}"), "{{stage}} {{topic}}")],
                        f"{r.comment(f'engagement:consumer_lag:growth{lag_win}')}; needs "
                        f"{lag_win} of history.",
                        w=12,
                        h=8,
                    ),
                ],
            ),
            Row(
                "Workers",
                [
                    P(
                        "stat",
                        "Workers up",
                        [
                            Q("sum(up)", "up"),
                            Q("count(up)", "scraped"),
                        ],
                        "Workers whose /metrics Prometheus scraped at its last attempt, of "
                        "the targets it scrapes.",
                        w=6,
                    ),
                    P(
                        "stat",
                        "Partitions owned",
                        [Q(f"sum by (kind) ({RAW['partitions']})", "{{kind}}")],
                        "Partitions held over every worker, per kind: the partition count "
                        "of the input topics when no rebalance is in progress.",
                        w=6,
                    ),
                    P(
                        "stat",
                        "Worker versions",
                        [Q(f"count by (version) ({RAW['info']})", "{{version}}")],
                        "Workers per engagement-metrics version.",
                        w=6,
                    ),
                    P(
                        "stat",
                        "Spread of the workers' as-of",
                        [Q(f"max({RAW['as_of']}) - min({RAW['as_of']})")],
                        "Each worker evaluates its windows at its own scrape instant: the "
                        "summed KPIs are exact up to this spread.",
                        unit="s",
                        w=6,
                        decimals=1,
                    ),
                    P(
                        "timeseries",
                        "Worker memory (resident)",
                        [Q(f"sum by (instance) ({RAW['memory']})", "{{instance}}")],
                        "Resident memory of each worker process (process collector of "
                        "/metrics): grows with the users and accounts its partitions hold.",
                        unit="bytes",
                        w=8,
                        h=8,
                    ),
                    P(
                        "timeseries",
                        "Worker CPU",
                        [Q(f"sum by (instance) (rate({RAW['cpu']}[{win}]))", "{{instance}}")],
                        f"CPU of each worker process in cores (user + system), averaged over "
                        f"{win}. One core per worker is the ceiling of its Python process.",
                        unit="short",
                        w=8,
                        h=8,
                        decimals=2,
                    ),
                    P(
                        "timeseries",
                        "Worker open file descriptors",
                        [Q(f"sum by (instance) ({RAW['fds']})", "{{instance}}")],
                        "Open file descriptors of each worker process (sockets to Kafka and "
                        "Redis, state files); process_max_fds is the limit.",
                        w=8,
                        h=8,
                    ),
                    P(
                        "timeseries",
                        "Partitions owned per worker",
                        [
                            Q(
                                f"sum by (instance, kind) ({RAW['partitions']})",
                                "{{instance}} {{kind}}",
                            )
                        ],
                        "Partitions each worker holds: moves show rebalances.",
                        w=24,
                        h=8,
                    ),
                ],
            ),
        ],
    )


def boards(cfg: dict[str, Any] | None = None) -> dict[str, Board]:
    """{file stem: dashboard} for a rules.toml config (default: the committed one)."""
    from streams.config import Config  # the default funnel_steps

    rules = Rules(prometheus_generator().load_config() if cfg is None else cfg)
    makers: dict[str, Callable[[], Board]] = {
        "overview": lambda: overview(rules),
        "onboarding": lambda: onboarding(rules, Config().funnel_steps),
        "retention-churn": lambda: retention(rules),
        "support-commerce": lambda: support_commerce(rules),
        "pipeline-health": lambda: pipeline(rules),
    }
    out = {stem: make() for stem, make in makers.items()}
    for board in out.values():
        board.rule_labels, board.selector = rules.labels, rules.selector
        for row in board.rows:
            for p in row.panels:
                alerts = RUNBOOK_PANELS.get(p.title.split(":")[0].split(" (")[0], ())
                p.links = [(f"Runbook: {a}", rules.runbook(a)) for a in alerts]
    return out


# Panels that show the condition of an alert (by title, without its window): they link the
# alert's runbook (rules.toml: runbook_base).
RUNBOOK_PANELS = {
    "DAU": ("EngagementDauBelowLastWeek",),
    "CSAT": ("EngagementCsatDrop",),
    "NPS": ("EngagementNpsDrop",),
    "Churn signals": ("EngagementChurnSignalSpike",),
    "Records per second": ("EngagementNoRecords",),
    "Dead-letter ratio": ("EngagementDeadLetterRate",),
    "Consumer lag growth": ("EngagementConsumerLagGrowing",),
    "Workers up": ("EngagementWorkerDown",),
}


def dashboards(cfg: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """{file stem: dashboard JSON model}."""
    return {stem: _build(board) for stem, board in boards(cfg).items()}


def render(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate(cfg: dict[str, Any] | None = None) -> dict[Path, str]:
    return {OUT / f"{stem}.json": render(model) for stem, model in dashboards(cfg).items()}


def iter_panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel of a dashboard model, rows included (and panels of collapsed rows)."""
    out = []
    for panel in model.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def panel_targets(cfg: dict[str, Any] | None = None) -> list[tuple[str, str, str]]:
    """Every (dashboard uid, panel title, expr) of the dashboards as Grafana has them, with
    the variables $job and $namespace."""
    return [
        (model["uid"], panel["title"], target["expr"])
        for model in dashboards(cfg).values()
        for panel in iter_panels(model)
        for target in panel.get("targets", [])
    ]


def substitute(expr: str, job: str, namespace: str = ".*") -> str:
    """`expr` as Grafana sends it with the variables set to `job` and `namespace`."""
    out = expr.replace("$job", job).replace("$namespace", namespace)
    if "$" in out:
        raise AssertionError(f"a Grafana variable other than $job and $namespace in {expr!r}")
    return out


def panel_queries(
    cfg: dict[str, Any] | None = None, job: str | None = None
) -> list[tuple[str, str, str]]:
    """Every (dashboard uid, panel title, PromQL expr) of the dashboards, in order, with the
    variables set: job `job` (default: rules.toml's worker_job), every namespace.

    `cfg` is a rules.toml config as deploy/prometheus/generate.py reads it (e.g. its
    `scaled(cfg, N)` for a fresh Prometheus): the rate windows and rule names follow it.
    Each expr can be sent to Prometheus's /api/v1/query as is.
    """
    if job is None:
        job = (prometheus_generator().load_config() if cfg is None else cfg)["common"]["worker_job"]
    return [(uid, title, substitute(e, job)) for uid, title, e in panel_targets(cfg)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    files = generate()
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    extra = sorted(set(OUT.glob("*.json")) - set(files))
    if args.check:
        for path in [*stale, *extra]:
            print(f"stale: {path.relative_to(REPO)}")
        if stale or extra:
            print("run: .venv/bin/python deploy/grafana/generate.py")
        return 1 if stale or extra else 0
    OUT.mkdir(exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO)}")
    for path in extra:
        path.unlink()
        print(f"removed {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
