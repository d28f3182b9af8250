"""Redis on the local stack: a round trip of the structures the worker uses (strings, hashes,
sorted sets), in a database of this test alone."""

from __future__ import annotations

import pytest
import redis

from tests.integration.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_redis_round_trip(redis_client: redis.Redis) -> None:
    assert redis_client.ping()
    assert redis_client.dbsize() == 0

    redis_client.set("partial:product-events:3", '{"dau": 17}')
    assert redis_client.get("partial:product-events:3") == '{"dau": 17}'

    # Absolute values, never increments (idempotent writes outside Kafka).
    redis_client.hset("snapshot:2026-11-23", mapping={"dau": "17", "wau": "40"})
    redis_client.hset("snapshot:2026-11-23", mapping={"dau": "17", "wau": "40"})
    assert redis_client.hgetall("snapshot:2026-11-23") == {"dau": "17", "wau": "40"}

    redis_client.zadd("health", {"account-1": 0.8, "account-2": 0.3})
    redis_client.zadd("health", {"account-2": 0.4})
    assert redis_client.zrange("health", 0, -1, withscores=True) == [
        ("account-2", 0.4),
        ("account-1", 0.8),
    ]

    redis_client.set("ephemeral", "1", px=50)
    assert redis_client.pttl("ephemeral") > 0


def test_each_test_has_its_own_database(stack: Stack, redis_db: int) -> None:
    assert redis_db != 0
    mine = redis.Redis(host=stack.redis_host, port=stack.redis_port, db=redis_db)
    other = redis.Redis(host=stack.redis_host, port=stack.redis_port, db=0)
    try:
        mine.set("only-here", "1")
        assert other.get("only-here") is None
    finally:
        mine.close()
        other.close()
