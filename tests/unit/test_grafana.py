"""The Grafana dashboards (deploy/grafana/): the committed JSON is what generate.py writes, every
query is PromQL that promtool parses and reads only recording rules of
deploy/prometheus/rules/recording.yml or series that docs/metrics.md documents and
agents/metrics.py exports, panels are well formed, and the provisioning and docker-compose.yml
agree on where the dashboards and the datasource are.

promtool comes with the Debian package prometheus (deploy/local/install-packages.sh); without it
the parse test fails, never skips.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
RECORDING = REPO / "deploy" / "prometheus" / "rules" / "recording.yml"
PROMETHEUS_YML = REPO / "deploy" / "prometheus" / "prometheus.yml"


def _generator() -> ModuleType:
    name = "grafana_dashboards_generate"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, GRAFANA / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return _generator()


@pytest.fixture(scope="module")
def models(gen: ModuleType) -> dict[str, dict[str, Any]]:
    """The committed dashboards, {file stem: JSON model}."""
    import json

    files = sorted((GRAFANA / "dashboards").glob("*.json"))
    assert files, "no dashboard in deploy/grafana/dashboards/"
    return {p.stem: json.loads(p.read_text()) for p in files}


def _recording_rules() -> dict[str, str]:
    groups = yaml.safe_load(RECORDING.read_text())["groups"]
    return {r["record"]: r["expr"] for g in groups for r in g["rules"]}


# --- which series an expression reads ----------------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
_KEYWORDS |= {"and", "or", "unless", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (functions, labels and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?\d+[smhdwy]", " ", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group(0)
        if word.lower() in _KEYWORDS or re.match(r"\s*\(", text[m.end() :]):
            continue
        if m.start() > 0 and (text[m.start() - 1].isdigit() or text[m.start() - 1] == "."):
            continue  # the exponent of a number such as 1e3
        names.add(word)
    return names


def test_metric_names_finds_series_and_skips_functions_labels_and_keywords() -> None:
    expr = (
        'histogram_quantile(0.5, sum by (le) (a_bucket{job="x", le!="1"})) / ignoring (step) '
        "b:rule:pct offset 5m - sum(rate(c_total[5m])) * 1e3 and on () up"
    )
    assert metric_names(expr) == {"a_bucket", "b:rule:pct", "c_total", "up"}


def _documented_series() -> set[str]:
    text = (REPO / "docs" / "metrics.md").read_text()
    return set(re.findall(r"\b(?:engagement|process|python)_[a-z0-9_]*[a-z0-9]", text))


def _exported(name: str, documented: set[str]) -> bool:
    """`name` is a documented series (a histogram's _bucket/_sum/_count of a documented one)
    and agents/metrics.py names it (prometheus_client adds `_total` to counters and `_info` to
    info metrics)."""
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    if name not in documented and base not in documented:
        return False
    if name.startswith(("process_", "python_")):  # prometheus_client's process collectors
        from prometheus_client import CollectorRegistry

        from agents.metrics import add_process_collectors

        reg = add_process_collectors(CollectorRegistry())
        names = {s.name for m in reg.collect() for s in m.samples}
        return name in names
    source = (REPO / "agents" / "metrics.py").read_text()
    return any(
        f'"{n}"' in source
        for n in {name, base, name.removesuffix("_total"), name.removesuffix("_info")}
    )


# --- the tests ---------------------------------------------------------------------------------


def test_the_committed_dashboards_are_what_generate_py_writes(gen: ModuleType) -> None:
    generated = gen.generate()
    committed = sorted((GRAFANA / "dashboards").glob("*.json"))
    assert sorted(generated) == committed, "run .venv/bin/python deploy/grafana/generate.py"
    for path, text in generated.items():
        assert path.read_text() == text, (
            f"{path.relative_to(REPO)} is stale: run .venv/bin/python deploy/grafana/generate.py"
        )
    assert gen.main(["--check"]) == 0


def test_the_five_dashboards_of_the_issue_are_there(models: dict[str, dict[str, Any]]) -> None:
    titles = {m["title"] for m in models.values()}
    assert titles == {
        "Engagement / Overview",
        "Engagement / Onboarding",
        "Engagement / Retention and churn",
        "Engagement / Support and commerce",
        "Engagement / Pipeline health",
    }
    assert len({m["uid"] for m in models.values()}) == len(models)


# What each dashboard must show (issue #5): a series or rule name that must appear in its queries.
REQUIRED = {
    "engagement-overview": [
        "engagement:dau:users",
        "engagement:wau:users",
        "engagement:mau:users",
        "engagement:stickiness:pct",
        "engagement:csat_1h:pct",
        "engagement:nps_7d:score",
        "engagement:ces_7d:avg",
    ],
    "engagement-onboarding": [
        "engagement:first_week_activation:pct",
        "engagement:ttfv_median_approx:hours",
        "engagement:funnel_reached:users",
    ],
    "engagement-retention": [
        "engagement:retention:pct",
        "engagement:churn_rate_30d:pct",
        "engagement:churn_signals_1h:count",
        "engagement:customers_at_risk:count",
    ],
    "engagement-support-commerce": [
        "engagement:tickets_opened_24h:count",
        "engagement:avg_resolution_7d:hours",
        "engagement:orders_90d:count",
        "engagement:revenue_90d:sum",
    ],
    "engagement-pipeline": [
        "engagement_records_processed_total",
        "engagement:records_rejected:rate5m",
        "engagement:consumer_lag:records",
        "up",
        "engagement_partitions_owned",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ],
}


def test_each_dashboard_shows_what_the_issue_asks(gen: ModuleType) -> None:
    read: dict[str, set[str]] = {}
    for uid, _title, expr in gen.panel_queries():
        read.setdefault(uid, set()).update(metric_names(expr))
    assert set(read) == set(REQUIRED)
    for uid, names in REQUIRED.items():
        missing = set(names) - read[uid]
        assert not missing, f"{uid} does not show {sorted(missing)}"


def test_panel_targets_lists_every_target_of_the_committed_json(
    gen: ModuleType, models: dict[str, dict[str, Any]]
) -> None:
    from_json = [
        (m["uid"], p["title"], t["expr"])
        for m in models.values()
        for p in gen.iter_panels(m)
        for t in p.get("targets", [])
    ]
    assert sorted(gen.panel_targets()) == sorted(from_json)
    assert len(from_json) >= 50
    # panel_queries: the same, with $job and $namespace set; no other variable is left.
    queries = gen.panel_queries(job="engagement-worker-staging")
    assert len(queries) == len(from_json)
    for _uid, _title, expr in queries:
        assert "$" not in expr and 'job="engagement-worker-staging"' in expr


def _series_matchers(expr: str) -> list[tuple[str, str]]:
    """(series name, its matchers) for every series an expression selects."""
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = metric_names(expr)
    return [
        (m.group(1), m.group(2) or "")
        for m in re.finditer(r'(?<![\w:"])([A-Za-z_:][\w:]*)(\{[^}]*\})?(?!\s*\()', text)
        if m.group(1) in names
    ]


def _missing_job(expr: str) -> list[str]:
    return [name for name, matchers in _series_matchers(expr) if 'job="$job"' not in matchers]


def test_every_panel_query_selects_the_job_variable(models: dict[str, dict[str, Any]]) -> None:
    """Issue 15.2: every series every panel query selects carries job="$job" (and the raw
    series namespace=~"$namespace"), so one Prometheus scraping two deployments shows one."""
    gen = _generator()
    checked = 0
    for model in models.values():
        for p in gen.iter_panels(model):
            for t in p.get("targets", []):
                assert not _missing_job(t["expr"]), f"{model['uid']} / {p['title']}: {t['expr']}"
                for name, matchers in _series_matchers(t["expr"]):
                    checked += 1
                    if ":" not in name:
                        assert 'namespace=~"$namespace"' in matchers, (p["title"], t["expr"])
    assert checked >= 60


def test_the_job_check_fails_on_a_query_without_the_job_selector() -> None:
    assert _missing_job('sum(rate(engagement_intake_records_total{job="$job"}[5m])) / sum(up)') == [
        "up"
    ]
    assert _missing_job('engagement:dau:users{job="$job"} - engagement:dau:users offset 1d') == [
        "engagement:dau:users"
    ]
    assert _missing_job('histogram_quantile(0.5, sum by (le) (x_bucket{job="$job"}))') == []


def test_every_dashboard_has_the_datasource_namespace_and_job_variables(
    gen: ModuleType, models: dict[str, dict[str, Any]]
) -> None:
    cfg = gen.prometheus_generator().load_config()
    selector = cfg["common"]["worker_selector"]
    for stem, model in models.items():
        variables = {v["name"]: v for v in model["templating"]["list"]}
        assert list(variables) == ["datasource", "namespace", "job"], stem
        ds = variables["datasource"]
        assert ds["type"] == "datasource" and ds["query"] == "prometheus"
        assert ds["current"]["value"] == gen.DATASOURCE_UID
        job, ns = variables["job"], variables["namespace"]
        assert job["type"] == ns["type"] == "query"
        assert not job["multi"] and not job["includeAll"], "one deployment at a time"
        assert selector in job["query"] and 'namespace=~"$namespace"' in job["query"]
        assert job["query"].endswith(", job)") and ns["query"].endswith(", namespace)")
        assert ns["includeAll"] and ns["allValue"] == ".*"
        for v in (job, ns):
            assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_panels_of_alert_conditions_link_their_runbook(
    gen: ModuleType, models: dict[str, dict[str, Any]]
) -> None:
    """Runbook links follow rules.toml's runbook_base (the alerts' runbook_url)."""
    cfg = gen.prometheus_generator().load_config()
    linked = set()
    for model in models.values():
        for p in gen.iter_panels(model):
            for link in p.get("links", []):
                alert = link["title"].removeprefix("Runbook: ")
                assert link["url"] == f"{cfg['common']['runbook_base']}/{alert}.md"
                assert (REPO / "docs" / "runbooks" / f"{alert}.md").is_file()
                linked.add(alert)
    alerts = yaml.safe_load((REPO / "deploy" / "prometheus" / "rules" / "alerts.yml").read_text())
    assert linked == {r["alert"] for g in alerts["groups"] for r in g["rules"]}
    other = {**cfg, "common": {**cfg["common"], "runbook_base": "https://example.org/rb"}}
    urls = [
        link["url"]
        for model in gen.dashboards(other).values()
        for p in gen.iter_panels(model)
        for link in p.get("links", [])
    ]
    assert urls and all(u.startswith("https://example.org/rb/") for u in urls)


def test_every_query_is_valid_promql(gen: ModuleType, tmp_path: Path) -> None:
    """promtool parses each expression (as the expr of a recording rule)."""
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(promtool).exists():
        pytest.fail("promtool not found: run deploy/local/install-packages.sh")
    queries = gen.panel_queries()
    rules = [{"record": f"grafana:panel_{i}:expr", "expr": q[2]} for i, q in enumerate(queries)]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promtool_rejects_a_broken_query(tmp_path: Path) -> None:
    """The parse check above can fail."""
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    path = tmp_path / "bad.yml"
    rules = [{"record": "grafana:bad", "expr": "sum by (le (x)"}]
    path.write_text(yaml.safe_dump({"groups": [{"name": "bad", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, timeout=60
    )
    assert result.returncode != 0


def test_every_query_reads_recording_rules_or_documented_series(gen: ModuleType) -> None:
    rules = _recording_rules()
    documented = _documented_series()
    unknown = []
    for uid, title, expr in gen.panel_queries():
        for name in metric_names(expr):
            if name in rules or name == "up" or _exported(name, documented):
                continue
            unknown.append(f"{uid} / {title}: {name}")
    assert not unknown, "series neither recorded nor documented and exported:\n" + "\n".join(
        unknown
    )


def test_the_up_query_selects_the_workers_scrape_job(gen: ModuleType) -> None:
    scrape = yaml.safe_load(PROMETHEUS_YML.read_text())["scrape_configs"]
    jobs = {c["job_name"] for c in scrape}
    selected = {
        m
        for _, _, expr in gen.panel_queries()
        for m in re.findall(r'\bup\{[^}]*\bjob="([^"]+)"', expr)
    }
    assert selected, "no panel counts the workers up"
    assert selected <= jobs


def test_panel_ids_and_titles_are_unique_per_dashboard(
    gen: ModuleType, models: dict[str, dict[str, Any]]
) -> None:
    for stem, model in models.items():
        panels = gen.iter_panels(model)
        ids = [p["id"] for p in panels]
        titles = [p["title"] for p in panels]
        assert len(ids) == len(set(ids)), f"{stem}: repeated panel id"
        assert len(titles) == len(set(titles)), f"{stem}: repeated panel title"
        for p in panels:
            if p["type"] == "row":
                continue
            assert p.get("description"), f"{stem} / {p['title']}: no description"
            assert p.get("targets"), f"{stem} / {p['title']}: no query"
            grid = p["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, f"{stem} / {p['title']}"


def test_every_panel_uses_the_provisioned_datasource(
    gen: ModuleType, models: dict[str, dict[str, Any]]
) -> None:
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert len(provisioned) == 1
    source = provisioned[0]
    for model in models.values():
        for p in gen.iter_panels(model):
            if p["type"] == "row":
                continue
            refs = [p["datasource"], *(t["datasource"] for t in p["targets"])]
            for ref in refs:
                assert ref == {"type": source["type"], "uid": "${datasource}"}, p["title"]
        current = model["templating"]["list"][0]["current"]
        assert current["value"] == source["uid"], "the datasource variable's default"


def test_medians_from_histograms_say_so_in_their_description(
    gen: ModuleType, models: dict[str, dict[str, Any]]
) -> None:
    rules = _recording_rules()
    seen = 0
    for model in models.values():
        for p in gen.iter_panels(model):
            exprs = [t["expr"] for t in p.get("targets", [])]
            via = [e for e in exprs if "histogram_quantile" in e]
            via += [
                e
                for e in exprs
                for n in metric_names(e)
                if "histogram_quantile" in rules.get(n, "")
            ]
            if via:
                seen += 1
                assert "histogram_quantile" in p["description"], p["title"]
                assert "median" in p["title"].lower() and "approx" in p["title"].lower()
    assert seen >= 4  # time to first value, resolution, session duration, health


def test_rule_names_and_windows_follow_the_rules_config(gen: ModuleType) -> None:
    """With another dead-letter window in rules.toml the panels read the rules renamed after it
    (and a rule the Prometheus generator does not write fails the generation)."""
    cfg = copy.deepcopy(gen.prometheus_generator().load_config())
    cfg["alerts"]["EngagementDeadLetterRate"]["window"] = "1m"
    exprs = [e for _, _, e in gen.panel_queries(cfg)]
    assert 'engagement:records_accepted:rate1m{job="engagement-worker"}' in exprs
    processed = 'engagement_records_processed_total{namespace=~".*", job="engagement-worker"}'
    assert f"sum(rate({processed}[1m]))" in exprs
    assert not any("rate5m" in e or "[5m]" in e for e in exprs)
    with pytest.raises(KeyError, match="no recording rule"):
        gen.Rules(cfg)("engagement:no_such:rule")


def test_provisioning_loads_the_directory_docker_compose_mounts() -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "engagement.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in volumes
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
