"""Create (or check) the project's Kafka topics.

Creates product-events, survey-answers, dead-letters and churn-signals with the partition
counts and configs declared in streams/topics.py (retention without expiry, CreateTime
timestamps, historical and future timestamps accepted). Idempotent: a topic that already
exists is left as it is; if its partition count differs from the declared one, that is
reported and the command fails (partitions cannot be removed, and the input topics must stay
co-partitioned: delete the topic or use another prefix).

examples:
  engagement topics                              # create missing topics on 127.0.0.1:9092
  engagement topics --check                      # only verify; exit 1 if one is missing
  engagement topics --prefix test-42.            # test-42.product-events, ...
  engagement topics --bootstrap kafka:9092 --input-partitions 16

environment:
  KAFKA_BOOTSTRAP                 default for --bootstrap (127.0.0.1:9092)
  ENGAGEMENT_TOPIC_PREFIX         default for --prefix (empty)
  ENGAGEMENT_INPUT_PARTITIONS     default for --input-partitions (8)
  ENGAGEMENT_OUTPUT_PARTITIONS    default for --output-partitions (4)
  ENGAGEMENT_REPLICATION_FACTOR   default for --replication-factor (1)
  KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*   TLS and SASL (docs/operations.md, Security)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError, for_code

from streams.errors import ConfigError
from streams.topics import (
    TopicSettings,
    TopicSettingsError,
    TopicSpec,
    topic_specs,
)

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
ENV_BOOTSTRAP = "KAFKA_BOOTSTRAP"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = TopicSettings.from_env(os.environ) if _env_is_valid() else TopicSettings()
    parser.add_argument(
        "--bootstrap",
        default=default_bootstrap(),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP or %(default)s)",
    )
    parser.add_argument(
        "--prefix",
        default=None,
        help="topic name prefix (default: $ENGAGEMENT_TOPIC_PREFIX or none)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only verify that every topic exists with its declared partition count",
    )
    parser.add_argument(
        "--input-partitions",
        type=int,
        default=None,
        metavar="N",
        help=f"partitions of the input topics (default {env.input_partitions})",
    )
    parser.add_argument(
        "--output-partitions",
        type=int,
        default=None,
        metavar="N",
        help=f"partitions of the output topics (default {env.output_partitions})",
    )
    parser.add_argument(
        "--replication-factor",
        type=int,
        default=None,
        metavar="N",
        help=f"replication factor (default {env.replication_factor})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for Kafka (default %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        base = TopicSettings.from_env(os.environ)
        settings = TopicSettings(
            prefix=base.prefix if args.prefix is None else args.prefix,
            input_partitions=args.input_partitions or base.input_partitions,
            output_partitions=args.output_partitions or base.output_partitions,
            replication_factor=args.replication_factor or base.replication_factor,
        )
    except TopicSettingsError as exc:
        print(f"engagement topics: {exc}", file=sys.stderr)
        return EXIT_USAGE
    specs = topic_specs(settings)
    if not logging.getLogger().handlers:
        # aiokafka logs every failed connection attempt; our own error says it once.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        statuses = asyncio.run(
            ensure_topics(args.bootstrap, specs, create=not args.check, timeout=args.timeout)
        )
    except (AdminError, KafkaError) as exc:
        print(f"engagement topics: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    for status in statuses:
        print(status.describe())
    return EXIT_OK if all(s.ok for s in statuses) else EXIT_FAILURE


def _env_is_valid() -> bool:
    try:
        TopicSettings.from_env(os.environ)
    except TopicSettingsError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m agents.admin`: the same command without the `engagement` dispatcher.

    The stack scripts use it, so creating topics never depends on the other sub-commands.
    """
    parser = argparse.ArgumentParser(
        prog="engagement topics",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
