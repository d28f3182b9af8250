"""Kafka administration: create (or check) the project's topics, count partitions, delete.

`ensure_topics` creates the topics declared in streams/topics.py (or the worker's internal
ones) with their partition counts and configs; a topic that exists is left as it is, and one
whose partition count differs is reported. The worker runs it before Faust starts
(`engagement worker`), `engagement topics` (engagement_cli/cmd_topics.py) on its own, and the
other commands use `connect` and `partition_counts`. TLS/SASL settings come from the
environment (agents/security.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError, for_code

from streams.errors import ConfigError
from streams.topics import TopicSpec

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
ENV_BOOTSTRAP = "KAFKA_BOOTSTRAP"


class AdminError(Exception):
    """Kafka could not be reached or refused an operation."""


@dataclass(frozen=True, slots=True)
class TopicStatus:
    """What happened to one declared topic."""

    spec: TopicSpec
    state: str  # "created", "exists", "missing", "partitions-differ"
    actual_partitions: int | None = None

    @property
    def ok(self) -> bool:
        return self.state in ("created", "exists")

    def describe(self) -> str:
        s = self.spec
        if self.state == "created":
            return f"created  {s.name} ({s.partitions} partitions)"
        if self.state == "exists":
            return f"exists   {s.name} ({s.partitions} partitions)"
        if self.state == "missing":
            return f"MISSING  {s.name} (declared {s.partitions} partitions)"
        return (
            f"DIFFERS  {s.name} has {self.actual_partitions} partitions, declared "
            f"{s.partitions}: delete the topic or use another prefix"
        )


def default_bootstrap() -> str:
    return os.environ.get(ENV_BOOTSTRAP) or DEFAULT_BOOTSTRAP


async def connect(bootstrap: str, timeout: float = 30.0) -> AIOKafkaAdminClient:
    """A started admin client; retries until `timeout` seconds while the broker is not up.
    TLS/SASL settings come from the environment (agents/security.py)."""
    from agents.security import kafka_kwargs

    try:
        security = kafka_kwargs()
    except ConfigError as exc:
        raise AdminError(str(exc)) from None
    deadline = time.monotonic() + timeout
    while True:
        client = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="engagement-admin",
            request_timeout_ms=max(1000, int(timeout * 1000)),
            **security,
        )
        try:
            await client.start()
            return client
        except KafkaConnectionError as exc:
            await client.close()
            if time.monotonic() >= deadline:
                raise AdminError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
            await asyncio.sleep(0.5)


async def partition_counts(client: AIOKafkaAdminClient, names: Iterable[str]) -> dict[str, int]:
    """Partition count of each named topic that exists (missing topics are left out)."""
    wanted = list(names)
    if not wanted:
        return {}
    existing = set(await client.list_topics())
    present = [n for n in wanted if n in existing]
    if not present:
        return {}
    described: list[dict[str, Any]] = await client.describe_topics(present)
    return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}


async def ensure_topics(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    *,
    create: bool = True,
    timeout: float = 30.0,
) -> list[TopicStatus]:
    """Create the missing topics of `specs` (unless `create` is false) and report each one.

    Waits until every created topic has a leader for each partition, so producers can use it
    at once.
    """
    client = await connect(bootstrap, timeout)
    try:
        before = await partition_counts(client, (s.name for s in specs))
        missing = [s for s in specs if s.name not in before]
        created: set[str] = set()
        if create and missing:
            response = await client.create_topics(
                [
                    NewTopic(
                        s.name,
                        s.partitions,
                        s.replication_factor,
                        topic_configs=dict(s.configs),
                    )
                    for s in missing
                ],
                timeout_ms=int(timeout * 1000),
            )
            for item in response.to_object()["topic_errors"]:
                error = for_code(item["error_code"])
                if item["error_code"] == 0:
                    created.add(item["topic"])
                elif error is not TopicAlreadyExistsError:  # a concurrent creator won: fine
                    raise AdminError(
                        f"could not create {item['topic']}: {error.__name__}: "
                        f"{item['error_message']}"
                    )
            await _wait_for_leaders(client, [s.name for s in missing], timeout)
        after = await partition_counts(client, (s.name for s in specs)) if create else before
    finally:
        await client.close()

    statuses = []
    for s in specs:
        actual = after.get(s.name)
        if actual is None:
            statuses.append(TopicStatus(s, "missing"))
        elif actual != s.partitions:
            statuses.append(TopicStatus(s, "partitions-differ", actual))
        elif s.name in created:
            statuses.append(TopicStatus(s, "created", actual))
        else:
            statuses.append(TopicStatus(s, "exists", actual))
    return statuses


async def delete_topics(bootstrap: str, names: Sequence[str], timeout: float = 30.0) -> None:
    """Delete the named topics that exist (used by tests to clean up their prefixes)."""
    client = await connect(bootstrap, timeout)
    try:
        existing = set(await client.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await client.delete_topics(doomed, timeout_ms=int(timeout * 1000))
    finally:
        await client.close()


async def list_topics(bootstrap: str, timeout: float = 30.0) -> list[str]:
    client = await connect(bootstrap, timeout)
    try:
        return sorted(await client.list_topics())
    finally:
        await client.close()


async def _wait_for_leaders(client: AIOKafkaAdminClient, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while names:
        described: list[dict[str, Any]] = await client.describe_topics(names)
        ready = all(
            t["error_code"] == 0
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        )
        if ready:
            return
        if time.monotonic() >= deadline:
            raise AdminError(f"topics {names} have no leader after {timeout:.0f}s")
        await asyncio.sleep(0.2)
