"""End to end, alerts: a real Prometheus scrapes a real worker fed by a simulated stream (with
40 days of history backfilled through record timestamps), evaluates the repo's rules and sends
alerts to a real Alertmanager, which routes them to a webhook receiver run by this test.

A fresh Prometheus has no hours of history, so it loads the committed recording rules plus the
same rules rendered by `deploy/prometheus/generate.py --time-scale 20` (every PromQL range,
offset and `for` of rules.toml divided by 20; the exported "1h"/"24h" windows unchanged).
Alertmanager runs the repo's config with its webhook URLs pointed at this test's receiver.

Two deployments are scraped by this one Prometheus, as jobs of their own (issue 15.4):
production (job engagement-worker, the worker with the backfilled history) and staging (job
engagement-worker-staging: another worker with its own topics and app id, a day of sparse
history and a slow live stream). The normal streams fire nothing; a burst of subscription
cancellations and NPS detractor answers sent to production makes EngagementChurnSignalSpike
reach the webhook (severity page -> the pager receiver) naming the production job only, and the
test reports the delay; staging fires nothing. Every Grafana panel's query, with the job
variable set to production, returns data from this Prometheus.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents import admin
from streams.topics import TopicSettings, topic_specs
from tests.integration.conftest import Stack
from tests.integration.live_harness import (
    REPO,
    WorkerProc,
    free_port,
    metric_sums,
    run_cli,
    series,
    wait_ready,
)

pytestmark = pytest.mark.integration

SCALE = 20  # rules.toml's PromQL durations / 20: short window 5m -> 15s, `for` 2m -> 6s
INTERVAL = "1s"  # scrape and rule evaluation interval of the test's Prometheus
QUIET_SECONDS = 60  # the normal stream must fire nothing over this long (4 x 15s windows)
SPIKE_DEADLINE = 300  # "fires within 5 minutes of a real spike"
# The spike: BURST cancellations and as many NPS detractor answers, sent over BURST_SECONDS. A
# spike lasts: the rules' estimate of the last 15s stays up while it goes on, long enough for
# Alertmanager's group_wait (10s on the page route; its timers are not scaled).
BURST = 120
BURST_SECONDS = 30
PROM = REPO / "deploy" / "prometheus"
# The two deployments' scrape jobs (both match rules.toml's worker_selector).
PRODUCTION, STAGING = "engagement-worker", "engagement-worker-staging"


def _binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name) or (
            f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else ""
        )
        if path:
            return path
    pytest.fail(f"none of {names} installed: run deploy/local/install-packages.sh", pytrace=False)


class Webhook:
    """An Alertmanager webhook receiver: every POST is kept with its arrival time."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str, dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.received.append((time.monotonic(), self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, status: str = "firing") -> list[tuple[float, str, dict[str, Any]]]:
        """(arrival, path, alert) of every alert received with `status`."""
        return [
            (t, path, a)
            for t, path, body in self.received
            for a in body.get("alerts", [])
            if a.get("status") == status
        ]


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


class Monitoring:
    """A private Prometheus + Alertmanager for one test (they run the repo's configs)."""

    def __init__(self, tmp: Path, jobs: dict[str, list[WorkerProc]], webhook: Webhook) -> None:
        self.tmp = tmp
        self.am_port, self.prom_port = free_port(), free_port()
        rules = tmp / "scaled-rules"
        r = subprocess.run(
            [sys.executable, str(PROM / "generate.py"), "--time-scale", str(SCALE),
             "--out-dir", str(rules)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        # Alertmanager: the repo's routing, its webhooks pointed at the test's receiver.
        am = yaml.safe_load((REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
        for receiver in am["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                path = urllib.parse.urlsplit(hook["url"]).path
                hook["url"] = f"http://127.0.0.1:{webhook.port}{path}"
        (tmp / "alertmanager.yml").write_text(yaml.safe_dump(am))
        # Prometheus: the repo's config, faster intervals, this test's Alertmanager, and its
        # workers as the repo's worker job (its targets static), once per deployment.
        prom = yaml.safe_load((PROM / "prometheus.yml").read_text())
        prom["global"].update(scrape_interval=INTERVAL, evaluation_interval=INTERVAL)
        prom["rule_files"] = [
            str(PROM / "rules" / "recording.yml"),
            str(rules / "recording-scaled.yml"),
            str(rules / "alerts.yml"),
        ]
        prom["alerting"]["alertmanagers"] = [
            {"static_configs": [{"targets": [f"127.0.0.1:{self.am_port}"]}]}
        ]
        (worker_job,) = [j for j in prom["scrape_configs"] if j["job_name"] == PRODUCTION]
        worker_job.pop("file_sd_configs", None)
        prom["scrape_configs"] = [
            {
                **worker_job,
                "job_name": name,
                "static_configs": [{"targets": [f"127.0.0.1:{w.port}" for w in workers]}],
            }
            for name, workers in jobs.items()
        ]
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(prom))
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def prom_url(self) -> str:
        return f"http://127.0.0.1:{self.prom_port}"

    def start(self) -> None:
        am_log, prom_log = self.tmp / "alertmanager.log", self.tmp / "prometheus.log"
        am = _spawn(
            [_binary("prometheus-alertmanager", "alertmanager"),
             f"--config.file={self.tmp / 'alertmanager.yml'}",
             f"--storage.path={self.tmp / 'am-data'}",
             f"--web.listen-address=127.0.0.1:{self.am_port}",
             "--cluster.listen-address="],
            am_log,
        )  # fmt: skip
        self.procs.append(am)
        _wait_http(f"http://127.0.0.1:{self.am_port}/-/ready", am, am_log)
        prom = _spawn(
            [_binary("prometheus"),
             f"--config.file={self.tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.tmp / 'prom-data'}",
             f"--web.listen-address=127.0.0.1:{self.prom_port}"],
            prom_log,
        )  # fmt: skip
        self.procs.append(prom)
        _wait_http(f"{self.prom_url}/-/ready", prom, prom_log)

    def stop(self) -> None:
        for p in self.procs:
            _stop(p)

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def diagnose(self) -> dict[str, Any]:
        """What the spike alert's inputs looked like over the last 5 minutes."""
        out: dict[str, Any] = {}
        for expr in (
            "max_over_time(engagement:churn_signals_new_15s:estimate[5m])",
            "engagement:churn_signals_baseline_per_15s:avg",
            'max_over_time(engagement_churn_signals{window="1h"}[5m])',
            'min_over_time(engagement_churn_signals{window="1h"}[5m])',
            "min_over_time(up[5m])",
            "max_over_time(scrape_duration_seconds[5m])",
        ):
            try:
                out[expr] = [(r["metric"], r["value"][1]) for r in self.query(expr)]
            except OSError as exc:
                out[expr] = repr(exc)
        return out

    def rules_evaluated(self) -> bool:
        with urllib.request.urlopen(f"{self.prom_url}/api/v1/rules", timeout=10) as r:
            groups = json.loads(r.read())["data"]["groups"]
        return bool(groups) and all(g.get("lastEvaluation", "").startswith("2") for g in groups)


def _module(path: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_gen_{path.parent.name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _panel_queries(job: str) -> list[tuple[str, str, str]]:
    """Every Grafana panel's (dashboard, title, expr), rendered with the scaled rules' names
    and the dashboards' job variable set to `job`."""
    prom = _module(PROM / "generate.py")
    grafana = _module(REPO / "deploy" / "grafana" / "generate.py")
    return list(grafana.panel_queries(prom.scaled(prom.load_config(), SCALE), job=job))


def _live(env: dict[str, str], rate: str, seed: str, log: Path) -> subprocess.Popen[bytes]:
    """A live stream (records stamped now) into the deployment of `env`."""
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "engagement_cli", "simulate", "--kafka", "--live",
             "--users", "300", "--accounts", "60", "--bad-fraction", "0.01", "--rate", rate,
             "--duration", "1h", "--seed", seed, "--progress", "none"],
            env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


def _read_up(worker: WorkerProc, at_least: float, timeout: float = 300) -> None:
    """Wait until `worker` has read `at_least` records and its lag is small."""
    deadline = time.monotonic() + timeout
    while True:
        sums = metric_sums([worker])
        lag = sum(v for (n, _), v in sums.items() if n == "engagement_consumer_lag_records")
        read = series(sums, "engagement_intake_records_total")
        if read > at_least and lag < 50:
            return
        assert time.monotonic() < deadline, f"{worker.name}: backfill not read: {read}, lag {lag}"
        time.sleep(2)


def _simulate(env: dict[str, str], *args: str) -> None:
    r = run_cli("simulate", "--kafka", "--users", "300", "--accounts", "60",
                "--bad-fraction", "0.01", "--progress", "none", *args, env=env, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-3000:]


def _burst(env: dict[str, str], prefix: str) -> None:
    """BURST cancellations and BURST NPS detractor answers, timestamped now, paced over
    BURST_SECONDS."""
    now = int(time.time() * 1000)
    lines = []
    for i in range(BURST):
        user = f"burst-user-{i}"
        cancel = {"event_id": f"burst-cancel-{i}", "type": "subscription_cancelled",
                  "user_id": user, "account_id": f"burst-account-{i}", "ts": now}  # fmt: skip
        answer = {"response_id": f"burst-nps-{i}", "survey": "nps", "score": 2,
                  "user_id": user, "ts": now}  # fmt: skip
        for topic, payload in (("product-events", cancel), ("survey-answers", answer)):
            lines.append(json.dumps({"topic": topic, "key": user, "ts": now,
                                     "payload": json.dumps(payload)}))  # fmt: skip
    path = Path(env["BURST_FILE"])
    path.write_text("\n".join(lines) + "\n")
    r = run_cli("load", "--rate", str(2 * BURST / BURST_SECONDS), str(path), env=env)
    assert r.returncode == 0, r.stderr.decode()[-2000:]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


def test_churn_spike_reaches_the_webhook_naming_only_the_job_that_spiked(
    stack: Stack, topics: dict[str, str], topic_prefix: str, redis_db: int, tmp_path: Path,
    webhook: Webhook,
) -> None:  # fmt: skip
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP=stack.kafka_bootstrap,
        REDIS_URL=f"redis://{stack.redis_host}:{stack.redis_port}/{redis_db}",
        ENGAGEMENT_TOPIC_PREFIX=topic_prefix,
        ENGAGEMENT_APP_ID=topic_prefix.strip(".").replace(".", "-") + "-app",
        ENGAGEMENT_DATA_DIR=str(tmp_path / "w1"),
        BURST_FILE=str(tmp_path / "burst.jsonl"),
    )
    env.pop("ENGAGEMENT_CLOCK", None)  # the worker's clock is the wall clock
    # Staging: a deployment of its own (topics under a prefix of its own, deleted with the
    # test's; its own app id, so its Redis keys differ too).
    staging_prefix = f"{topic_prefix}staging."
    specs = topic_specs(TopicSettings(prefix=staging_prefix))
    statuses = asyncio.run(admin.ensure_topics(stack.kafka_bootstrap, specs))
    assert all(s.state == "created" for s in statuses), [s.describe() for s in statuses]
    staging_env = {
        **env,
        "ENGAGEMENT_TOPIC_PREFIX": staging_prefix,
        "ENGAGEMENT_APP_ID": staging_prefix.strip(".").replace(".", "-") + "-app",
        "ENGAGEMENT_DATA_DIR": str(tmp_path / "s1"),
    }
    worker = WorkerProc("w1", env, tmp_path / "w1.log")
    staging = WorkerProc("s1", staging_env, tmp_path / "s1.log")
    monitoring = Monitoring(tmp_path, {PRODUCTION: [worker], STAGING: [staging]}, webhook)
    live: list[subprocess.Popen[bytes]] = []
    try:
        worker.start()
        staging.start()
        wait_ready([worker, staging])
        # History through record timestamps: 39 quiet days, then the last day at the live rate
        # (the churn-signal baseline is the exported 24h count). Staging: a sparse last day.
        now = time.time()
        day_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 86_400))
        _simulate(env, "--duration", "39d", "--rate", "0.03", "--seed", "1",
                  "--start", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 40 * 86_400)))  # fmt: skip
        _simulate(env, "--duration", "1d", "--rate", "1", "--seed", "2", "--start", day_ago)
        _simulate(staging_env, "--duration", "1d", "--rate", "0.05", "--seed", "4",
                  "--start", day_ago)  # fmt: skip
        live.append(_live(env, "1", "3", tmp_path / "live.log"))
        live.append(_live(staging_env, "0.5", "5", tmp_path / "live-staging.log"))
        # The workers have read the backfill: Prometheus then sees streams in their steady state.
        _read_up(worker, 100_000)
        _read_up(staging, 3_000)

        monitoring.start()
        deadline = time.monotonic() + 60
        while not (
            monitoring.rules_evaluated()
            and len(monitoring.query('up{job=~"engagement-worker.*"} == 1')) == 2
            and len(monitoring.query("engagement:churn_signals_baseline_per_15s:avg")) > 0
            and len(monitoring.query("engagement:dau:users")) == 2
        ):
            assert time.monotonic() < deadline, "Prometheus did not scrape both workers"
            time.sleep(1)
        # The rules keep the two deployments apart: one DAU per job, each its worker's own
        # (up to the live streams' new users between Prometheus's scrape and this one).
        dau = {r["metric"]["job"]: float(r["value"][1]) for r in monitoring.query(
            "engagement:dau:users")}  # fmt: skip
        assert set(dau) == {PRODUCTION, STAGING}, dau
        sums = {w.name: metric_sums([w]) for w in (worker, staging)}
        for job, name in ((PRODUCTION, "w1"), (STAGING, "s1")):
            own = series(sums[name], "engagement_active_users", window="1d")
            assert abs(dau[job] - own) <= max(3, own * 0.05), (job, dau, own)

        # The normal stream: nothing pending long enough to fire, nothing delivered.
        time.sleep(QUIET_SECONDS)
        fired = monitoring.query(f'max_over_time(ALERTS{{alertstate="firing"}}[{QUIET_SECONDS}s])')
        assert fired == [], [f["metric"] for f in fired]
        assert webhook.alerts() == [], webhook.received
        # Every dashboard panel's query returns data from this Prometheus.
        panels = _panel_queries(PRODUCTION)
        assert len(panels) > 40
        deadline = time.monotonic() + 60
        while True:
            empty = [
                (uid, title, expr) for uid, title, expr in panels if not monitoring.query(expr)
            ]
            if not empty or time.monotonic() > deadline:
                break
            time.sleep(5)
        assert not empty, f"{len(empty)} of {len(panels)} panel queries return nothing: {empty}"

        baseline = {
            r["metric"]["signal"]: float(r["value"][1])
            for r in monitoring.query("engagement:churn_signals_baseline_per_15s:avg")
        }
        assert baseline.get("cancellation", 0) < BURST / 3, baseline  # the burst is a spike

        # The spike.
        sent = time.monotonic()
        _burst(env, topic_prefix)
        arrived: dict[str, tuple[float, str, dict[str, Any]]] = {}
        while time.monotonic() - sent < SPIKE_DEADLINE and len(arrived) < 2:
            for t, path, alert in webhook.alerts():
                if alert["labels"].get("alertname") == "EngagementChurnSignalSpike":
                    arrived.setdefault(alert["labels"]["signal"], (t, path, alert))
            time.sleep(0.5)
        assert set(arrived) == {"cancellation", "nps_detractor"}, (
            f"spike alerts delivered: {sorted(arrived)}; webhook got {webhook.received}; "
            f"ALERTS now: {monitoring.query('ALERTS')}; diagnostics: {monitoring.diagnose()}"
        )
        for signal, (t, path, alert) in arrived.items():
            assert path == "/alerts/page", path  # severity page -> the pager receiver
            assert alert["labels"]["job"] == PRODUCTION, alert["labels"]
            assert alert["labels"]["severity"] == "page"
            assert alert["labels"]["layer"] == "kpi"
            assert alert["annotations"]["summary"] == f"Spike of {signal} churn signals"
            runbook = alert["annotations"]["runbook_url"]
            assert runbook == "docs/runbooks/EngagementChurnSignalSpike.md"
            assert (REPO / runbook).exists()
            print(
                f"{signal}: spike sent -> webhook delivery {t - sent:.1f}s "
                f"(scrape and evaluation every {INTERVAL}, rules scaled 1/{SCALE}, "
                f"Alertmanager group_wait of the page route)"
            )
        # Only the job that spiked: no alert of staging fired or reached the webhook, nor went
        # pending after the spike. (Not before it: right after Prometheus starts, a rate over
        # one sample is empty, so EngagementNoRecords can be pending for an evaluation or two.)
        delivered = {a["labels"].get("job") for _, _, a in webhook.alerts()}
        assert delivered == {PRODUCTION}, webhook.received
        staged = monitoring.query(
            f'max_over_time(ALERTS{{job="{STAGING}"}}[{int(time.monotonic() - sent) + 2}s])'
        )
        assert staged == [], [f["metric"] for f in staged]
        spiking = monitoring.query('ALERTS{alertname="EngagementChurnSignalSpike"}')
        assert {a["metric"]["job"] for a in spiking} <= {PRODUCTION}, spiking
    finally:
        for proc in live:
            _stop(proc)
        monitoring.stop()
        worker.stop()
        staging.stop()
