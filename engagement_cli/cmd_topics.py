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

from aiokafka.errors import KafkaError

from agents.admin import AdminError, default_bootstrap, ensure_topics
from agents.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from streams.topics import TopicSettings, TopicSettingsError, topic_specs


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
