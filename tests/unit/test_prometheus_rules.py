"""The Prometheus rules and the Alertmanager config: generated files are up to date, promtool
accepts the rules and their unit tests (deploy/prometheus/tests/) pass, every alert has its
runbook, and amtool accepts the Alertmanager config and routes alerts by severity.

promtool and amtool come with the Debian packages prometheus and prometheus-alertmanager
(deploy/local/install-packages.sh). Without them these tests fail: they never skip.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
RULES = sorted((PROM / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else "")
    if not path:
        pytest.fail(
            f"{name} not found on PATH or in /usr/bin: install it with "
            "deploy/local/install-packages.sh (Debian packages prometheus, prometheus-alertmanager)"
        )
    return path


def _run(*args: str, stdout_only: bool = False) -> str:
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output}"
    return result.stdout if stdout_only else output


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("prom_rules_generate", PROM / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _rules(kind: str) -> list[dict[str, object]]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if kind in rule
    ]


def _groups() -> list[str]:
    return [g["name"] for p in RULES for g in yaml.safe_load(p.read_text())["groups"]]


def test_the_committed_rule_files_are_what_generate_py_writes() -> None:
    gen = _generator()
    generated = gen.generate(gen.load_config())
    # the rule files, and the same groups as a PrometheusRule for Kubernetes (tests/unit/test_k8s.py)
    assert sorted(generated) == sorted([*RULES, REPO / "deploy" / "k8s" / "prometheusrule.yaml"])
    for path, text in generated.items():
        assert path.read_text() == text, (
            f"{path.relative_to(REPO)} is stale: run .venv/bin/python deploy/prometheus/generate.py"
        )


def test_promtool_accepts_the_rules() -> None:
    output = _run(_tool("promtool"), "check", "rules", *map(str, RULES))
    assert "SUCCESS" in output


def test_promtool_accepts_the_config_with_its_rule_files() -> None:
    output = _run(_tool("promtool"), "check", "config", str(PROM / "prometheus.yml"))
    assert f"SUCCESS: {len(RULES)} rule files found" in output


def test_every_rule_group_has_its_promtool_test_file() -> None:
    assert sorted(p.stem for p in RULE_TESTS) == sorted(_groups())


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.stem)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    output = _run(_tool("promtool"), "test", "rules", str(test_file))
    assert "SUCCESS" in output


def test_every_recording_rule_is_checked_by_a_promtool_test() -> None:
    tested = "\n".join(p.read_text() for p in RULE_TESTS)
    missing = [r["record"] for r in _rules("record") if f"expr: {r['record']}" not in tested]
    assert not missing, f"recording rules without a promql_expr_test: {missing}"


def test_every_alert_fires_in_a_promtool_test_and_has_its_runbook() -> None:
    tested = "\n".join(p.read_text() for p in RULE_TESTS)
    for rule in _rules("alert"):
        name = str(rule["alert"])
        assert f"alertname: {name}" in tested, f"{name} is not tested"
        assert rule.get("for"), f"{name} has no for"
        labels = rule["labels"]
        annotations = rule["annotations"]
        assert isinstance(labels, dict) and labels["severity"] in {"page", "ticket"}
        assert isinstance(annotations, dict)
        assert {"summary", "description", "runbook_url"} <= set(annotations)
        assert annotations["runbook_url"] == f"docs/runbooks/{name}.md"
        runbook = REPO / "docs" / "runbooks" / f"{name}.md"
        assert runbook.is_file(), f"{runbook.relative_to(REPO)} is missing"


def _exprs() -> dict[str, str]:
    return {str(r.get("record") or r["alert"]): str(r["expr"]) for r in _rules("expr")}


def test_every_rule_keeps_the_deployment_labels_and_reads_only_the_workers() -> None:
    """Issue 15.1: one Prometheus scraping two deployments never adds them together. Every
    aggregation keeps the deployment labels of rules.toml, every vector match is on them, and
    every raw series carries the worker selector (no hard-coded job name)."""
    common = _generator().load_config()["common"]
    labels = ", ".join(common["deployment_labels"])
    selector = common["worker_selector"]
    assert "job" in common["deployment_labels"] and selector
    for name, expr in _exprs().items():
        for agg in re.findall(r"\b(?:sum|count|avg|min|max)(?: by \(([^)]*)\))? ?\(", expr):
            assert agg.startswith(labels), f"{name}: an aggregation drops {labels}: {expr}"
        assert "on ()" not in expr and "ignoring" not in expr and "vector(" not in expr, name
        for on in re.findall(r"\bon \(([^)]*)\)", expr):
            assert on == labels, f"{name}: matches on ({on}), not on ({labels})"
        raw = re.findall(r"(?<![\w:])((?:engagement_|up\b)[\w]*)(\{[^}]*\})?", expr)
        for series, matchers in raw:
            assert matchers.startswith("{" + selector), f"{name}: {series} without {selector}"
        assert 'job="' not in expr, f"{name} hard-codes a job: {expr}"


def test_promtool_tests_cover_two_deployments() -> None:
    """Every promtool test file feeds the rules the series of two jobs, and each file's results
    name the job: production (engagement-worker) and staging (engagement-worker-staging)."""
    for path in RULE_TESTS:
        text = path.read_text()
        for job in ("engagement-worker", "engagement-worker-staging"):
            assert f'job="{job}"' in text, f"{path.name}: no input series of job {job}"
        assert "job: engagement-worker-staging" in text or (
            '{job="engagement-worker-staging"' in text and "exp_samples" in text
        ), f"{path.name}: no expected result names the staging job"


def test_amtool_accepts_the_alertmanager_config() -> None:
    output = _run(_tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG))
    assert "SUCCESS" in output


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=EngagementWorkerDown", "severity=page", "layer=worker"], "pager"),
        (["alertname=EngagementChurnSignalSpike", "severity=page", "layer=kpi"], "pager"),
        (["alertname=EngagementCsatDrop", "severity=ticket", "layer=kpi"], "tickets"),
        (["alertname=SomethingElse"], "default"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receiver: str) -> None:
    output = _run(
        _tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receiver}",  # a mismatch exits with an error
        *labels,
        stdout_only=True,
    )
    assert output.strip() == receiver


def test_alertmanager_inhibits_symptoms_while_a_worker_is_down() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    rules = config["inhibit_rules"]
    worker_down = [r for r in rules if 'alertname="EngagementWorkerDown"' in r["source_matchers"]]
    assert len(worker_down) == 1
    rule = worker_down[0]
    assert rule["target_matchers"] == ['layer=~"kpi|pipeline"']
    layers = {r["alert"]: r["labels"]["layer"] for r in _rules("alert")}  # type: ignore[index]
    assert layers.pop("EngagementWorkerDown") == "worker"
    assert set(layers.values()) == {"kpi", "pipeline"}


def test_time_scaled_rules_divide_promql_durations_and_keep_exported_windows(
    tmp_path: Path,
) -> None:
    """`generate.py --time-scale 20` (used by the end-to-end alert test): every `for`, range and
    offset of the committed alerts divided by 20; label windows ("1h", "24h") unchanged;
    promtool accepts the scaled files next to the committed recording rules."""
    gen = _generator()
    assert gen.main(["--time-scale", "20", "--out-dir", str(tmp_path)]) == 0
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def secs(text: str) -> float:
        return int(text[:-1]) * units[text[-1]]

    def alerts(path: Path) -> dict[str, dict[str, object]]:
        groups = yaml.safe_load(path.read_text())["groups"]
        return {r["alert"]: r for g in groups for r in g["rules"]}

    full, small = alerts(PROM / "rules" / "alerts.yml"), alerts(tmp_path / "alerts.yml")
    assert sorted(full) == sorted(small)
    duration = re.compile(r"(\[|offset )(\d+[smhd])")
    for name, rule in full.items():
        assert secs(str(small[name]["for"])) * 20 == secs(str(rule["for"])), name
        big = [secs(d) for _, d in duration.findall(str(rule["expr"]))]
        little = [secs(d) for _, d in duration.findall(str(small[name]["expr"]))]
        assert [d / 20 for d in big] == little, name
        labels = re.compile(r'window="[^"]+"')
        assert labels.findall(str(rule["expr"])) == labels.findall(str(small[name]["expr"]))
    scaled_records = [
        r["record"]
        for g in yaml.safe_load((tmp_path / "recording-scaled.yml").read_text())["groups"]
        for r in g["rules"]
    ]
    assert "engagement:churn_signals_new_15s:estimate" in scaled_records
    assert not set(scaled_records) & {str(r["record"]) for r in _rules("record")}
    _run(
        _tool("promtool"),
        "check",
        "rules",
        str(PROM / "rules" / "recording.yml"),
        str(tmp_path / "recording-scaled.yml"),
        str(tmp_path / "alerts.yml"),
    )
