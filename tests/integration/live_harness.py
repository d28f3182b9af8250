"""Running real workers (`engagement worker` processes) against the local stack, for tests."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.simulate import SimConfig, envelope_line, simulate

REPO = Path(__file__).resolve().parents[2]

# Types whose effect depends on arrival order ("first" wins) or on which copy of an id wins.
ORDER_SENSITIVE = {
    "signup", "purchase", "return", "ticket_opened", "ticket_resolved",
    "session_start", "session_end",
}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hand_made_bad_cases(user: str, ts_ms: int) -> list[tuple[str, str | None]]:
    """(topic, payload) of every bad case of the metric catalogue (payload None: tombstone)."""
    iso = "2026-11-20T10:00:00Z"
    ok = {"event_id": "x", "type": "page_view", "user_id": user, "ts": iso, "session_id": "s"}

    def ev(**over: Any) -> str:
        d = {**ok, **over}
        return json.dumps({k: v for k, v in d.items() if v is not ...})

    def ans(**over: Any) -> str:
        d = {"response_id": "r", "survey": "nps", "score": 9, "user_id": user, "ts": iso, **over}
        return json.dumps(d)

    pe, sa = "product-events", "survey-answers"
    deep = '{"event_id":"d","type":"page_view","session_id":"s","user_id":"%s","ts":1,"props":{"x":%s}}'
    return [
        (pe, '{"pad": "' + "x" * 66_000 + '"}'),  # too_large
        (pe, None),  # a tombstone: bad_json
        (pe, "{not json"),
        (pe, '{"a": NaN}'),
        (pe, '{"a": Infinity}'),
        (pe, "\ufeff" + ev(event_id="bom")),  # a byte-order mark
        (pe, ev(event_id="\ud800")),  # a lone surrogate: not UTF-8
        (pe, deep % (user, "[" * 63 + "]" * 63)),  # 65 levels
        (pe, "[]"),  # schema from here
        (pe, ev(event_id="e1", type="Page View")),
        (pe, ev(event_id="e2", ts="2026-11-20 10:00:00Z")),
        (pe, ev(event_id="e3", ts="2026-11-20T10:00:60Z")),
        (pe, ev(event_id="e4", ts="2026-11-20T10:00:00")),
        (pe, ev(event_id="e5", ts=1.5)),
        (pe, ev(event_id="e6", ts="1795168800000")),
        (pe, ev(event_id="e7", user_id="u" * 129)),
        (pe, ev(event_id="e8", session_id=...)),
        (pe, ev(event_id="e9", type="purchase", props={"order_id": "o", "amount": -1})),
        (pe, f'{{"event_id":"e10","type":"purchase","user_id":"{user}","ts":1,"props":{{"order_id":"o","amount":1e400}}}}'),
        (pe, ev(event_id="e11", type="social_interaction", props={"action": "poke"})),
        (pe, ev(event_id="e12", type="ticket_opened", props={"ticket_id": "t"})),
        (sa, ans(score=9.0)),
        (sa, ans(score="9")),
        (sa, ans(score=11)),
        (sa, ans(survey="csat", score=0)),
        (pe, ev(event_id="f1", ts=ts_ms + 3_600_001)),  # future
        (pe, ev(event_id="f2", ts=ts_ms - 49 * 3_600_000)),  # too_late
    ]  # fmt: skip


def make_dataset(
    records: int, users: int, seed: int, partitions: int, days: int = 40
) -> tuple[list[dict[str, Any]], int]:
    """A simulated stream (with every bad case) over `days` whose replay in file order is what
    the live pipeline computes: a record keyed by another user is forwarded and arrives later at
    its owner, so misrouting is kept only on records whose effect does not depend on order."""
    start = 1_795_168_800_000 - days * 86_400_000
    sim = SimConfig(start_ms=start, duration_s=days * 86400, users=users, rate=records / (days * 86400),
                    seed=seed, partitions=partitions, bad_fraction=0.02)  # fmt: skip
    envs = list(simulate(sim))
    counts: dict[tuple[str, str], int] = {}
    parsed: list[dict[str, Any] | None] = []
    for e in envs:
        try:
            p = json.loads(e["payload"]) if e["payload"] is not None else None
        except ValueError:
            p = None
        parsed.append(p if isinstance(p, dict) else None)
        if isinstance(p, dict):
            ident = str(p.get("event_id") or p.get("response_id"))
            counts[(str(p.get("user_id")), ident)] = (
                counts.get((str(p.get("user_id")), ident), 0) + 1
            )
    for e, p in zip(envs, parsed, strict=True):
        if p is None or not isinstance(p.get("user_id"), str) or e["key"] == p["user_id"]:
            continue
        ident = str(p.get("event_id") or p.get("response_id"))
        if p.get("type") in ORDER_SENSITIVE or counts[(p["user_id"], ident)] > 1:
            e["key"] = p["user_id"]
    last = envs[-1]["ts"]
    for i, (topic, payload) in enumerate(hand_made_bad_cases("u-bad", last)):
        envs.append({"topic": topic, "ts": last, "key": f"u-bad-{i}", "payload": payload})
    return envs, last


def write_jsonl(envs: list[dict[str, Any]], path: Path) -> None:
    with open(path, "wb") as fh:
        for e in envs:
            fh.write(
                envelope_line({k: v for k, v in e.items() if k not in ("partition", "offset")})
            )


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "engagement_cli", *args], capture_output=True, timeout=timeout,
        env=env, cwd=REPO, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@dataclass
class WorkerProc:
    name: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WorkerProc:
        env = {**self.env, "ENGAGEMENT_WEB_PORT": str(self.port), "ENGAGEMENT_WORKER_ID": self.name}
        with open(self.log, "ab") as fh:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engagement_cli", "worker"], cwd=REPO, env=env,
                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def get(self, path: str, timeout: float = 20) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                body = r.read()
                status = r.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read(), exc.code
        ctype = "json" if body[:1] in (b"{", b"[") else "text"
        return status, json.loads(body) if ctype == "json" else body.decode()

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def wait_ready(workers: list[WorkerProc], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for w in workers:
        while True:
            assert w.proc is not None
            if w.proc.poll() is not None:
                raise AssertionError(f"worker {w.name} exited {w.proc.returncode}:\n{w.tail()}")
            try:
                status, body = w.get("/health", timeout=5)
                if status == 200 and isinstance(body, dict) and body.get("live"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {w.name} not up in {timeout}s:\n{w.tail()}")
            time.sleep(0.5)


def total_records(snap: dict[str, Any]) -> int:
    return int(snap["accepted"] + snap["duplicates"] + sum(snap["rejected"].values()))


def wait_for_snapshot(
    workers: list[WorkerProc], as_of: str, expected_total: int, timeout: float = 300
) -> dict[str, Any]:
    """Poll /snapshot until every record is counted (consumer lag zero), then return it."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        dead = [w for w in workers if w.proc is not None and w.proc.poll() is not None]
        if dead and len(dead) == len(workers):
            logs = "\n\n".join(f"--- {w.name}\n{w.tail(40)}" for w in workers)
            raise AssertionError(
                f"every worker exited ({[w.proc.returncode for w in dead if w.proc]}):\n{logs}"
            )
        for w in workers:
            if w.proc is None or w.proc.poll() is not None:
                continue
            try:
                status, body = w.get(f"/snapshot?as_of={as_of}")
            except OSError as exc:
                last = repr(exc)
                continue
            last = (
                status,
                body
                if status != 200
                else {k: body.get(k) for k in ("accepted", "duplicates", "rejected")},
            )
            if status == 200 and total_records(body) >= expected_total:
                time.sleep(2)  # nothing more may arrive: take it again and compare
                status2, body2 = w.get(f"/snapshot?as_of={as_of}")
                if status2 == 200 and body2 == body:
                    return dict(body)
            break
        time.sleep(1)
    logs = "\n\n".join(f"--- {w.name}\n{w.tail(40)}" for w in workers)
    raise AssertionError(
        f"snapshot did not count {expected_total} records in {timeout}s; last: {last}\n{logs}"
    )


def metric_sums(workers: list[WorkerProc]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of every worker's /metrics, summed over the workers."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for w in workers:
        status, text = w.get("/metrics")
        assert status == 200, text
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                key = (s.name, frozenset(s.labels.items()))
                sums[key] = sums.get(key, 0.0) + s.value
    return sums


def series(
    sums: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    found = [v for (n, ls), v in sums.items() if n == name and want <= ls]
    assert found, f"no series {name}{labels}"
    return sum(found)


def metrics_vs_snapshot(
    sums: dict[tuple[str, frozenset[tuple[str, str]]], float], snap: dict[str, Any]
) -> dict[str, tuple[float, Any]]:
    """The snapshot counts that the summed series must reproduce, and the mismatches."""
    pairs: dict[str, tuple[float, Any]] = {
        "dau": (series(sums, "engagement_active_users", window="1d"), snap["dau"]),
        "wau": (series(sums, "engagement_active_users", window="7d"), snap["wau"]),
        "mau": (series(sums, "engagement_active_users", window="30d"), snap["mau"]),
        "accepted": (series(sums, "engagement_records_accepted_total"), snap["accepted"]),
        "duplicates": (series(sums, "engagement_records_duplicate_total"), snap["duplicates"]),
        "subscribers": (series(sums, "engagement_subscribers"), snap["subscribers"]),
        "orders_90d": (series(sums, "engagement_orders", window="90d"), snap["orders_90d"]),
        "sessions_24h": (series(sums, "engagement_sessions"), snap["sessions_24h"]),
        "tickets_opened_24h": (series(sums, "engagement_tickets_opened"), snap["tickets_opened_24h"]),
        "open_tickets": (series(sums, "engagement_open_tickets"), snap["open_tickets"]),
        "customers_at_risk": (series(sums, "engagement_customers_at_risk"), snap["customers_at_risk"]),
        "csat_responses_24h": (series(sums, "engagement_survey_responses", survey="csat", window="24h"), snap["csat_responses_24h"]),
        "nps_responses_30d": (series(sums, "engagement_survey_responses", survey="nps", window="30d"), snap["nps_responses_30d"]),
    }  # fmt: skip
    for reason, n in snap["rejected"].items():
        pairs[f"rejected.{reason}"] = (
            series(sums, "engagement_records_rejected_total", reason=reason),
            n,
        )
    for state, n in snap["lifecycle"].items():
        pairs[f"lifecycle.{state}"] = (series(sums, "engagement_lifecycle_users", state=state), n)
    for step, n in snap["funnel_reached"].items():
        pairs[f"funnel_reached.{step}"] = (
            series(sums, "engagement_funnel_reached_users", step=step),
            n,
        )
    for sig, n in snap["churn_signals_24h"].items():
        pairs[f"churn_signals_24h.{sig}"] = (
            series(sums, "engagement_churn_signals", window="24h", signal=sig),
            n,
        )
    for action, n in snap["social_interactions_24h"].items():
        pairs[f"social.{action}"] = (
            series(sums, "engagement_social_interactions", action=action),
            n,
        )
    return {k: v for k, v in pairs.items() if v[0] != v[1]} | {"_checked": (len(pairs), len(pairs))}
