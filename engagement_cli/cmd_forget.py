"""Erase a user (GDPR) from the workers' tables and from Redis.

Sends a forget request to the partition of the internal topic `<app>-batches` that owns the
user; the worker owning it deletes the user's state and the state of the customer named like
the user (a customer is its account_id, else its user_id), removes that customer's health score
from Redis, and keeps a tombstone (a SHA-256 of the id, never the id) so a redelivered record
cannot bring the user back. The command waits for the worker's receipt in Redis.

What it does not erase (docs/operations.md, "Forgetting a user"): the input topics and
dead-letters still hold the user's records until their retention or compaction removes them;
churn-signals name the customer; pipeline counters (accepted, duplicates, rejected) keep
counting the records; an account's aggregates keep the user's contribution, without the id.
Records of the user read after the forget are new data and count again.

examples:
  engagement forget u-42
  engagement forget u-42 --timeout 120
  engagement forget u-42 --no-wait            # queue the request and return
  ENGAGEMENT_TOPIC_PREFIX=staging. engagement forget u-42
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid

from agents.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from agents.forget import forget_message, receipt_key
from agents.internal import Names
from agents.settings import Settings
from streams.errors import ConfigError
from streams.live import owner_of


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("user", metavar="USER", help="the user_id to erase")
    p.add_argument("--bootstrap", default=None, help="Kafka (env KAFKA_BOOTSTRAP; 127.0.0.1:9092)")
    p.add_argument(
        "--redis-url", default=None, help="Redis of the workers (env REDIS_URL; db 0 on 6379)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for the worker's receipt (default %(default)s)",
    )
    p.add_argument(
        "--no-wait", action="store_true", help="send the request and return without waiting"
    )


async def _send(s: Settings, user: str, request_id: str) -> int:
    from aiokafka import AIOKafkaProducer

    topic = Names.of(s).batches
    producer = AIOKafkaProducer(
        bootstrap_servers=s.bootstrap,
        acks="all",
        enable_idempotence=True,
        **s.kafka_security.aiokafka_kwargs(),
    )
    await producer.start()
    try:
        parts = await producer.partitions_for(topic)
        if not parts:
            raise ConfigError(
                f"the topic {topic} does not exist: no worker of app {s.app_id!r} has run with "
                "this prefix (check ENGAGEMENT_APP_ID and ENGAGEMENT_TOPIC_PREFIX)"
            )
        if len(parts) != s.partitions:
            raise ConfigError(
                f"{topic} has {len(parts)} partitions, the settings say {s.partitions} "
                "(ENGAGEMENT_INPUT_PARTITIONS must match the workers')"
            )
        p = owner_of(user, s.partitions)
        await producer.send_and_wait(topic, forget_message(user, request_id), partition=p)
        return p
    finally:
        await producer.stop()


def _wait_receipt(s: Settings, user: str, request_id: str, timeout: float) -> bool:
    import redis

    from agents.health import health_keys

    r = redis.Redis.from_url(
        s.redis_url,
        socket_timeout=5,
        socket_connect_timeout=5,
        **s.redis_security.client_kwargs(s.redis_url),
    )
    key = receipt_key(s.topics.prefix, s.app_id, request_id)
    deadline = time.monotonic() + timeout
    try:
        while r.get(key) is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        # the worker removed them; again here in case an old health chunk landed after it
        zkey, hkey = health_keys(s.topics.prefix, s.app_id)
        pipe = r.pipeline(transaction=True)
        pipe.zrem(zkey, user)
        pipe.hdel(hkey, user)
        pipe.execute()
        return True
    finally:
        r.close()


def run(args: argparse.Namespace) -> int:
    if not args.user.strip() or len(args.user) > 128:
        print("engagement forget: USER must be a user_id of 1-128 characters", file=sys.stderr)
        return EXIT_USAGE
    try:
        s = Settings.load(overrides={"bootstrap": args.bootstrap, "redis_url": args.redis_url})
    except ConfigError as exc:
        print(f"engagement forget: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    import logging

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    request_id = uuid.uuid4().hex
    try:
        p = asyncio.run(_send(s, args.user, request_id))
    except ConfigError as exc:
        print(f"engagement forget: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:
        print(
            f"engagement forget: cannot send the request to Kafka at {s.bootstrap} "
            f"({type(exc).__name__}: {exc}); check that Kafka is up (`make stack-status`)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(f"forget: request {request_id} sent to user partition {p}")
    if args.no_wait:
        return EXIT_OK
    try:
        done = _wait_receipt(s, args.user, request_id, args.timeout)
    except Exception as exc:
        print(
            f"engagement forget: cannot read the receipt from Redis ({type(exc).__name__}); "
            "the request is queued and will be applied; run the command again to confirm "
            "(it is idempotent)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if not done:
        print(
            f"engagement forget: no receipt within {args.timeout:g}s; the request is queued in "
            "Kafka and a worker applies it when it runs (is one running? `engagement top`); "
            "run the command again to confirm (it is idempotent)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print("forget: done: the user's state and its customer's state and health are erased")
    return EXIT_OK
