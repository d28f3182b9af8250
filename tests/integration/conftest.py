"""Fixtures of the integration tests: the local stack, and per-test isolation on it.

The session fixture `stack` starts the local stack (deploy/local/stack-up.sh, which reuses a
running one). If the stack cannot start, every integration test FAILS with the reason: these
tests are never skipped (CI must not go green without a broker).

Each test gets its own topic prefix (its topics, consumer groups and Faust app ids start with
it; its topics are deleted afterwards), and its own Redis database (flushed afterwards).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from agents import admin
from streams.topics import TopicSettings, topic_specs

REPO = Path(__file__).resolve().parents[2]
STACK_UP = REPO / "deploy" / "local" / "stack-up.sh"
# A cold start downloads Kafka's jars and installs Debian packages.
STACK_UP_TIMEOUT = 900

# Redis databases 1..(N-1) are handed out to tests (the local stack configures 64); database 0
# holds the leases, so parallel test processes never share a database.
REDIS_LEASE_KEY = "engagement-tests:db-lease:{}"
REDIS_LEASE_SECONDS = 3600


@dataclass(frozen=True)
class Stack:
    """Where the services of the local stack listen."""

    kafka_bootstrap: str
    redis_host: str
    redis_port: int
    prometheus_url: str
    alertmanager_url: str
    log_dir: Path


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The local stack, started (or reused) once per test session."""
    try:
        result = subprocess.run(
            ["bash", str(STACK_UP)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=STACK_UP_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{STACK_UP.relative_to(REPO)} did not finish in {STACK_UP_TIMEOUT}s")
    if result.returncode != 0:
        pytest.fail(
            f"the local stack did not start ({STACK_UP.relative_to(REPO)} exited "
            f"{result.returncode}):\n{result.stderr[-4000:]}",
            pytrace=False,
        )
    host = "127.0.0.1"
    run_dir = Path(os.environ.get("ENGAGEMENT_RUN_DIR") or REPO / ".run")
    return Stack(
        kafka_bootstrap=os.environ.get("KAFKA_BOOTSTRAP") or f"{host}:{_port('KAFKA_PORT', 9092)}",
        redis_host=host,
        redis_port=_port("REDIS_PORT", 6379),
        prometheus_url=f"http://{host}:{_port('PROMETHEUS_PORT', 9090)}",
        alertmanager_url=f"http://{host}:{_port('ALERTMANAGER_PORT', 9093)}",
        log_dir=run_dir / "logs",
    )


@pytest.fixture
def unique_id(request: pytest.FixtureRequest) -> str:
    """A short id unique to this test run, readable in topic and group names."""
    name = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-").lower()[:40]
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def topic_prefix(stack: Stack, unique_id: str) -> Iterator[str]:
    """A topic prefix of this test; every topic whose name starts with it is deleted after."""
    prefix = f"test.{unique_id}."
    yield prefix

    async def cleanup() -> None:
        names = [n for n in await admin.list_topics(stack.kafka_bootstrap) if n.startswith(prefix)]
        await admin.delete_topics(stack.kafka_bootstrap, names)

    asyncio.run(cleanup())


@pytest.fixture
def topics(stack: Stack, topic_prefix: str) -> dict[str, str]:
    """The project's topics, created under this test's prefix: base name -> full name."""
    specs = topic_specs(TopicSettings(prefix=topic_prefix))
    statuses = asyncio.run(admin.ensure_topics(stack.kafka_bootstrap, specs))
    assert all(s.state == "created" for s in statuses), [s.describe() for s in statuses]
    return {s.base_name: s.name for s in specs}


@pytest.fixture
def consumer_group(topic_prefix: str) -> str:
    """A consumer group (or Faust app id) of this test alone."""
    return f"{topic_prefix}group"


@pytest.fixture
def redis_db(stack: Stack) -> Iterator[int]:
    """A Redis database number leased to this test, empty at start and flushed after."""
    leases = redis.Redis(host=stack.redis_host, port=stack.redis_port, db=0)
    token = uuid.uuid4().hex
    try:
        databases = int(str(leases.config_get("databases").get("databases") or 16))
        db = next(
            (
                n
                for n in range(1, databases)
                if leases.set(REDIS_LEASE_KEY.format(n), token, nx=True, ex=REDIS_LEASE_SECONDS)
            ),
            None,
        )
        if db is None:
            pytest.fail(f"all {databases - 1} Redis test databases are leased", pytrace=False)
        client = redis.Redis(host=stack.redis_host, port=stack.redis_port, db=db)
        client.flushdb()
        client.close()
        yield db
        client = redis.Redis(host=stack.redis_host, port=stack.redis_port, db=db)
        client.flushdb()
        client.close()
        if leases.get(REDIS_LEASE_KEY.format(db)) == token.encode():
            leases.delete(REDIS_LEASE_KEY.format(db))
    finally:
        leases.close()


@pytest.fixture
def redis_client(stack: Stack, redis_db: int) -> Iterator[redis.Redis]:
    """A client of this test's Redis database (str responses)."""
    client = redis.Redis(
        host=stack.redis_host, port=stack.redis_port, db=redis_db, decode_responses=True
    )
    yield client
    client.close()
