"""Security on a real secure stack (`SECURE=1 deploy/local/stack-up.sh`): Kafka over SASL_SSL
(SCRAM-SHA-512) and Redis over TLS with an ACL user, certificates and passwords generated at
start-up. A worker runs end to end through it; a wrong password and plaintext are refused; the
HTTP endpoints are read-only, bound to 127.0.0.1 and echo nothing; no password reaches a log.
Kafka authorizes with ACLs (engagement_cli/acls.py): the worker, the producers and the CLI each run as
their own principal, and a producer can write the two input topics and nothing else.

The secure stack has its own run directory and ports (SECURE_TEST_KAFKA_PORT=28092,
SECURE_TEST_KAFKA_CONTROLLER_PORT=28093, SECURE_TEST_REDIS_PORT=28380), is started once for this
module from a clean slate and stopped at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.fetch import FetchRequest
from redis.backoff import NoBackoff
from redis.retry import Retry

from agents.security import KAFKA_ENV, REDIS_ENV, KafkaSecurity
from streams.config import Config
from streams.replay import replay_lines
from streams.timeutil import format_instant
from streams.topics import CHURN_SIGNALS, DEAD_LETTERS, INPUT_TOPICS
from tests.integration.live_harness import (
    REPO,
    WorkerProc,
    make_dataset,
    run_cli,
    total_records,
    wait_for_snapshot,
    wait_ready,
    write_jsonl,
)

pytestmark = pytest.mark.integration

RUN_DIR = REPO / ".run" / "secure-tests"
PORTS = {
    "KAFKA_PORT": os.environ.get("SECURE_TEST_KAFKA_PORT", "28092"),
    "KAFKA_CONTROLLER_PORT": os.environ.get("SECURE_TEST_KAFKA_CONTROLLER_PORT", "28093"),
    "REDIS_PORT": os.environ.get("SECURE_TEST_REDIS_PORT", "28380"),
}
PARTITIONS = 4
RECORDS = 4000


USERS = ("admin", "worker", "producer", "cli")  # the Kafka users of the secure stack


@dataclass(frozen=True)
class SecureStack:
    client_env: dict[str, str]  # the shared settings of client.env (passwords by file)
    user_envs: dict[str, dict[str, str]]  # worker.env, producer.env, cli.env, admin.env
    stack_env: dict[str, str]  # what the stack scripts were run with
    kafka_passwords: dict[str, str] = field(repr=False)  # by user
    redis_password: str = field(repr=False)

    @property
    def secrets(self) -> dict[str, str]:
        return {
            **{f"kafka-{user}": pw for user, pw in self.kafka_passwords.items()},
            "redis": self.redis_password,
        }

    def env(self, user: str = "worker", **extra: str) -> dict[str, str]:
        """The environment of a component running as the Kafka `user`."""
        return {**self.stack_env, **self.user_envs[user], **extra}


def _read_env(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k] = v
    return out


def _base_env() -> dict[str, str]:
    """The environment without any setting of the plain stack (CI's ports, bootstrap...)."""
    drop = {
        *KAFKA_ENV, *REDIS_ENV, "KAFKA_BOOTSTRAP", "REDIS_URL", "ENGAGEMENT_RUN_DIR",
        "KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "REDIS_PORT", "PROMETHEUS_PORT",
        "ALERTMANAGER_PORT", "WORKER_PORT", "ENGAGEMENT_TOPIC_PREFIX", "STACK_SERVICES",
    }  # fmt: skip
    return {k: v for k, v in os.environ.items() if k not in drop}


def _script(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "deploy" / "local" / name)], cwd=REPO, env=env, text=True,
        stdin=subprocess.DEVNULL, capture_output=True, timeout=900, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def secure_stack() -> Iterator[SecureStack]:
    env = {
        **_base_env(), **PORTS, "SECURE": "1", "STACK_SERVICES": "kafka redis",
        "ENGAGEMENT_RUN_DIR": str(RUN_DIR),
    }  # fmt: skip
    _script("stack-down.sh", env)  # a stack a previous session left behind
    shutil.rmtree(RUN_DIR, ignore_errors=True)  # fresh certificates and passwords
    up = _script("stack-up.sh", env)
    if up.returncode != 0:
        _script("stack-down.sh", env)
        pytest.fail(f"the secure stack did not start:\n{up.stderr[-4000:]}", pytrace=False)
    try:
        secure = RUN_DIR / "secure"
        yield SecureStack(
            client_env=_read_env(secure / "client.env"),
            user_envs={user: _read_env(secure / f"{user}.env") for user in USERS},
            stack_env=env,
            kafka_passwords={u: (secure / f"kafka-{u}.password").read_text() for u in USERS},
            redis_password=(secure / "redis.password").read_text(),
        )
    finally:
        down = _script("stack-down.sh", env)
        assert down.returncode == 0, down.stderr


def test_client_settings_hold_no_secret(secure_stack: SecureStack) -> None:
    text = (RUN_DIR / "secure" / "client.env").read_text()
    assert "SASL_SSL" in text and "rediss://" in text
    for user in USERS:
        text += (RUN_DIR / "secure" / f"{user}.env").read_text()
        assert secure_stack.user_envs[user]["KAFKA_SASL_USERNAME"] == user
    assert "REDIS_URL" not in secure_stack.user_envs["producer"]  # producers need no Redis
    for name, secret in secure_stack.secrets.items():
        assert len(secret) >= 32, name
        assert secret not in text, f"the {name} password is in an env file"
    mode = (RUN_DIR / "secure").stat().st_mode & 0o777
    assert mode == 0o700, oct(mode)


# ---- Kafka: who gets in -------------------------------------------------------------------------


def _topics_check(env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return run_cli("topics", "--check", "--timeout", "4", env=env, timeout=120)


def _broker_says(since: int) -> str:
    """What the broker logged after byte `since` of its log."""
    with open(RUN_DIR / "logs" / "kafka.log", "rb") as fh:
        fh.seek(since)
        return fh.read().decode("utf-8", "replace")


def _log_size() -> int:
    return (RUN_DIR / "logs" / "kafka.log").stat().st_size


def test_kafka_admits_the_scram_user_over_tls(secure_stack: SecureStack) -> None:
    r = _topics_check(secure_stack.env())
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert b"product-events" in r.stdout + r.stderr


def test_kafka_refuses_a_wrong_password(secure_stack: SecureStack) -> None:
    env = secure_stack.env()
    env.pop("KAFKA_SASL_PASSWORD_FILE")
    env["KAFKA_SASL_PASSWORD"] = "not-the-password"
    since = _log_size()
    r = _topics_check(env)
    assert r.returncode != 0
    err = r.stderr.decode()
    assert "not-the-password" not in err  # the attempt is reported without the secret
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in _broker_says(since)


def test_kafka_refuses_plaintext(secure_stack: SecureStack) -> None:
    env = secure_stack.env(KAFKA_SECURITY_PROTOCOL="PLAINTEXT")
    since = _log_size()
    r = _topics_check(env)
    assert r.returncode != 0, r.stdout.decode()
    assert "SSL handshake failed" in _broker_says(since)


def test_kafka_refuses_tls_without_sasl(secure_stack: SecureStack) -> None:
    env = secure_stack.env(KAFKA_SECURITY_PROTOCOL="SSL")
    r = _topics_check(env)
    assert r.returncode != 0, r.stdout.decode()


def test_kafka_refuses_a_server_it_cannot_verify(secure_stack: SecureStack, tmp_path: Path) -> None:
    """Without the local CA, the client does not trust the broker (no silent downgrade)."""
    env = secure_stack.env()
    env.pop("KAFKA_SSL_CAFILE")
    r = _topics_check(env)
    assert r.returncode != 0, r.stdout.decode()


# ---- Redis: who gets in -------------------------------------------------------------------------


def _redis(secure: SecureStack, **kw: Any) -> redis.Redis:
    port = int(PORTS["REDIS_PORT"])
    base: dict[str, Any] = dict(
        host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=5,
        ssl=True, ssl_ca_certs=secure.client_env["REDIS_SSL_CAFILE"], ssl_check_hostname=True,
        username=secure.client_env["REDIS_USERNAME"], password=secure.redis_password,
        retry=Retry(NoBackoff(), 0),  # a refusal is final: no retries
    )  # fmt: skip
    base.update(kw)
    return redis.Redis(**base)


def test_redis_admits_the_acl_user_over_tls(secure_stack: SecureStack) -> None:
    with _redis(secure_stack) as r:
        assert r.ping() is True
        assert r.acl_whoami() == secure_stack.client_env["REDIS_USERNAME"]


def test_redis_refuses_a_wrong_password(secure_stack: SecureStack) -> None:
    with (
        _redis(secure_stack, password="not-the-password") as r,
        pytest.raises(redis.AuthenticationError),
    ):
        r.ping()


def test_redis_refuses_the_default_user(secure_stack: SecureStack) -> None:
    with _redis(secure_stack, username=None, password=None) as r, pytest.raises(redis.RedisError):
        r.ping()


def test_redis_refuses_plaintext(secure_stack: SecureStack) -> None:
    with _redis(secure_stack, ssl=False) as r, pytest.raises(redis.ConnectionError):
        r.ping()


# ---- a worker end to end, through TLS and SASL --------------------------------------------------


@dataclass
class SecureRun:
    live: dict[str, Any]
    expected: dict[str, Any]
    worker: WorkerProc
    logs: list[Path]
    env: dict[str, str]  # the worker's
    stack: SecureStack = field(repr=False)
    a_user: str  # a user_id of the records

    def env_of(self, user: str) -> dict[str, str]:
        """The worker's settings (prefix, app id, ...) with another Kafka user."""
        return {**self.env, **self.stack.user_envs[user]}


def _provision(secure: SecureStack, **deployment: str) -> None:
    """What an administrator does for a deployment (a topic prefix and an app id): its topics,
    and the ACLs of its worker, producers and CLI (engagement_cli/acls.py)."""
    env = secure.env("admin", **deployment)
    r = run_cli("topics", env=env, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    for action in ("--apply", "--check"):
        a = subprocess.run(
            [sys.executable, "-m", "engagement_cli.acls", action], env=env, cwd=REPO,
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        assert a.returncode == 0, a.stderr.decode()[-2000:]


@pytest.fixture(scope="module")
def secure_run(
    secure_stack: SecureStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureRun]:
    tmp = tmp_path_factory.mktemp("secure-run")
    prefix = f"test.secure-{uuid.uuid4().hex[:8]}."
    envs, last_ms = make_dataset(RECORDS, users=400, seed=17, partitions=PARTITIONS)
    data = tmp / "all.jsonl"
    write_jsonl(envs, data)
    as_of = format_instant((last_ms + 60_000) * 1_000_000)
    deployment = {
        "ENGAGEMENT_TOPIC_PREFIX": prefix,
        "ENGAGEMENT_INPUT_PARTITIONS": str(PARTITIONS),
        "ENGAGEMENT_APP_ID": "secure-app",
    }
    _provision(secure_stack, **deployment)
    env = secure_stack.env(
        "worker",
        **deployment,
        ENGAGEMENT_CLOCK=as_of,
        ENGAGEMENT_LOG_LEVEL="info",
        ENGAGEMENT_DATA_DIR=str(tmp / "w1"),
    )
    worker = WorkerProc("w1", env, tmp / "w1.log").start()
    load_log = tmp / "load.log"
    try:
        wait_ready([worker])
        r = run_cli("load", str(data), env={**env, **secure_stack.user_envs["producer"]})
        load_log.write_bytes(r.stdout + r.stderr)
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        live = wait_for_snapshot([worker], as_of, len(envs))
        with open(data, "rb") as fh:
            expected = replay_lines(fh, Config(), as_of)
        assert total_records(expected) == len(envs)
        yield SecureRun(
            live, expected, worker, [worker.log, load_log], env, secure_stack, envs[0]["key"]
        )
    finally:
        worker.stop()


def test_worker_over_sasl_ssl_equals_replay(secure_run: SecureRun) -> None:
    live = dict(secure_run.live)
    assert live.pop("coverage")
    diffs = {k: (live.get(k), v) for k, v in secure_run.expected.items() if live.get(k) != v}
    assert not diffs, json.dumps(diffs, indent=1)[:3000]
    assert secure_run.expected["accepted"] > RECORDS // 2
    assert sum(secure_run.expected["rejected"].values()) > 0


def test_worker_publishes_health_to_secure_redis(
    secure_run: SecureRun, secure_stack: SecureStack
) -> None:
    """The worker's Redis client went through TLS and the ACL user: its registry entry and the
    health scores are there."""
    with _redis(secure_stack) as r:
        keys = [k.decode() for k in r.scan_iter(match="test.secure-*")]
    assert any(":worker:" in k for k in keys), keys


def test_at_risk_reads_the_secure_redis(secure_run: SecureRun) -> None:
    """`engagement at-risk` (a Redis client of its own) through TLS and the ACL user: the
    health the worker published there, as of its pinned clock."""
    want = secure_run.expected["customers_at_risk"]
    body: dict[str, Any] = {}
    for _ in range(30):  # the worker publishes health every few seconds
        r = run_cli(
            "at-risk", "--json", "--limit", "10000", env=secure_run.env_of("cli"), timeout=60
        )
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        body = json.loads(r.stdout)
        if body["at_risk"] == want:
            break
        time.sleep(1)
    assert body["at_risk"] == want and want > 0


def test_simulate_produces_over_sasl_ssl(secure_stack: SecureStack) -> None:
    prefix = f"test.secure-sim-{uuid.uuid4().hex[:6]}."
    _provision(secure_stack, ENGAGEMENT_TOPIC_PREFIX=prefix)
    env = secure_stack.env("producer", ENGAGEMENT_TOPIC_PREFIX=prefix)
    r = run_cli("simulate", "--kafka", "--duration", "2m", "--rate", "5", "--progress", "none",
                env=env, timeout=180)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert b"600" in r.stderr  # its summary: every record acknowledged


# ---- HTTP: read-only, local, no echo ------------------------------------------------------------

ROUTES = ("/snapshot", "/partials", "/health", "/metrics", "/at-risk")


def _request(url: str, method: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, method=method, data=b"{}" if method != "DELETE" else None)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_http_endpoints_are_read_only(secure_run: SecureRun) -> None:
    w = secure_run.worker
    for route in ROUTES:
        status, _ = _request(w.url + route, "GET")
        assert status in (200, 503), (route, status)  # served (503: a dependency away)
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            status, _ = _request(w.url + route, method)
            assert status == 405, (route, method, status)


def test_http_binds_to_localhost_by_default(secure_run: SecureRun) -> None:
    """The harness sets no ENGAGEMENT_WEB_HOST: the worker listens on 127.0.0.1 only."""
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{secure_run.worker.port}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    local = {line.split()[3] for line in out.splitlines() if line.strip()}
    assert local == {f"127.0.0.1:{secure_run.worker.port}"}, out


HOSTILE = (
    '<script>alert("x")</script>',
    '{"event_id":"e-1","user_id":"victim@example.com","ts":"2026-11-20T10:00:00Z"}',
    "2026-11-20T10:00:00Z' OR '1'='1",
    "\x1b[31mred\x1b[0m" + "A" * 5000,
)


def test_http_errors_never_echo_what_was_sent(secure_run: SecureRun) -> None:
    from urllib.parse import quote

    w = secure_run.worker
    for value in HOSTILE:
        for route in ("/snapshot", "/partials"):
            status, body = _request(f"{w.url}{route}?as_of={quote(value)}", "GET")
            assert status == 400, (route, status)
            text = body.decode("utf-8", "replace")
            assert json.loads(text)["error"]
            for piece in ("script", "victim", "OR '1'", "AAAAAAAAAA", "\x1b"):
                assert piece not in text, (route, piece, text[:300])
        status, body = _request(f"{w.url}/at-risk?limit={quote(value)}", "GET")
        assert status == 400
        assert "victim" not in body.decode() and "script" not in body.decode()


# ---- no secret in any log ----------------------------------------------------------------------


def test_no_password_in_any_log(secure_run: SecureRun, secure_stack: SecureStack) -> None:
    logs = [*secure_run.logs, *sorted((RUN_DIR / "logs").glob("*"))]
    assert len(logs) >= 4 and all(p.is_file() for p in logs), logs
    sizes = {p.name: p.stat().st_size for p in logs}
    assert sizes["kafka.log"] > 0 and sizes["w1.log"] > 0, sizes
    for path in logs:
        data = path.read_bytes()
        for name, secret in secure_stack.secrets.items():
            assert secret.encode() not in data, f"the {name} password is in {path}"


# ---- Kafka ACLs: each component its own principal, with only what it needs ----------------------


def _kafka(env: dict[str, str]) -> dict[str, Any]:
    return {
        "bootstrap_servers": env["KAFKA_BOOTSTRAP"],
        **KafkaSecurity.from_env(env).aiokafka_kwargs(),
    }


async def _produce(env: dict[str, str], topic: str) -> str | None:
    """None when the record was written, else the name of the error."""
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, request_timeout_ms=20_000,
                                **_kafka(env))  # fmt: skip
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{}", key=b"acl-probe")
    except KafkaError as exc:
        return type(exc).__name__
    finally:
        await producer.stop()
    return None


async def _fetch(env: dict[str, str], topic: str) -> int:
    """The error code of Kafka's answer to a Fetch of partition 0 of `topic` from offset 0."""
    client = AIOKafkaClient(**_kafka(env))
    await client.bootstrap()
    try:
        node = next(iter(client.cluster.brokers())).nodeId
        resp = await client.send(node, FetchRequest(100, 1, 2**20, 0, [(topic, [(0, 0, 2**20)])]))
    finally:
        await client.close()
    [(name, [part, *_])] = resp.topics
    assert name == topic
    return int(part[1])


TOPIC_AUTHORIZATION_FAILED = 29


def test_producer_writes_the_input_topics_and_nothing_else(secure_run: SecureRun) -> None:
    """`engagement load` wrote the records as the producer (the fixture); here its principal
    writes each input topic, and is refused the outputs and every topic of the worker."""
    env = secure_run.env_of("producer")
    prefix, app = env["ENGAGEMENT_TOPIC_PREFIX"], env["ENGAGEMENT_APP_ID"]
    for base in INPUT_TOPICS:
        assert asyncio.run(_produce(env, prefix + base)) is None, base
    refused = [DEAD_LETTERS, CHURN_SIGNALS, f"{app}-batches", f"{app}-account-facts",
               f"{app}-users-changelog"]  # fmt: skip
    for base in refused:
        err = asyncio.run(_produce(env, prefix + base))
        assert err == "TopicAuthorizationFailedError", (base, err)


def test_producer_cannot_read_changelogs_or_outputs(secure_run: SecureRun) -> None:
    env = secure_run.env_of("producer")
    prefix, app = env["ENGAGEMENT_TOPIC_PREFIX"], env["ENGAGEMENT_APP_ID"]
    readers = {  # each topic, and who may read it
        f"{prefix}{app}-users-changelog": "worker",
        f"{prefix}{app}-accounts-changelog": "worker",
        f"{prefix}{app}-batches": "worker",
        prefix + INPUT_TOPICS[0]: "worker",
        prefix + DEAD_LETTERS: "cli",
        prefix + CHURN_SIGNALS: "admin",  # downstream consumers, with ACLs of their own
    }
    for topic, reader in readers.items():
        assert asyncio.run(_fetch(env, topic)) == TOPIC_AUTHORIZATION_FAILED, topic
        assert asyncio.run(_fetch(secure_run.env_of(reader), topic)) == 0, (topic, reader)


def test_cli_principal_forgets_a_user(secure_run: SecureRun) -> None:
    """`engagement forget` writes the worker's internal topic as the CLI's principal (last: it
    changes the worker's state); a producer may not."""
    r = run_cli("forget", secure_run.a_user, "--no-wait", env=secure_run.env_of("producer"))
    assert r.returncode != 0 and b"sent" not in r.stdout, r.stdout.decode()
    r = run_cli("forget", secure_run.a_user, "--timeout", "90", env=secure_run.env_of("cli"),
                timeout=150)  # fmt: skip
    assert r.returncode == 0, (r.stdout + r.stderr).decode()[-2000:]
    assert b"done" in r.stdout
