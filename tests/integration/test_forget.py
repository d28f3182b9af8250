"""`engagement forget USER` on the real stack: the user's state and its customer's state leave the
tables (changelog tombstones) and Redis, /snapshot equals the replay of the records without the
user's (the pipeline counters excepted: they count records, not people), a restart from the
changelogs keeps the user forgotten, and a record of the user after the forget counts again."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from agents.epoch import entity_key
from tests.integration.conftest import Stack
from tests.integration.live_harness import run_cli, total_records, wait_for_snapshot, wait_ready
from tests.integration.ops_helpers import (
    CLOCK,
    env_for,
    ev,
    load,
    read_topic,
    replay,
    small_dataset,
    worker,
)

pytestmark = pytest.mark.integration

PIPELINE = ("accepted", "duplicates", "rejected")


def _user_of(envelope: dict[str, Any]) -> str:
    return str(json.loads(envelope["payload"])["user_id"])


def _without_pipeline(snap: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in snap.items() if k not in (*PIPELINE, "coverage")}


def _latest(records: list[Any]) -> dict[bytes, bytes | None]:
    last: dict[bytes, bytes | None] = {}
    for m in sorted(records, key=lambda m: (m.partition, m.offset)):
        last[m.key] = m.value
    return last


def test_forget_erases_user_from_tables_redis_and_snapshot(
    stack: Stack, topic_prefix: str, redis_db: int, tmp_path: Path
) -> None:
    env = env_for(stack, topic_prefix, redis_db)
    app = env["ENGAGEMENT_APP_ID"]
    r = redis.Redis(host=stack.redis_host, port=stack.redis_port, db=redis_db)
    envs = small_dataset()
    w = worker("w1", env, tmp_path).start()
    try:
        wait_ready([w])
        load(envs, tmp_path / "in.jsonl", env)
        before = wait_for_snapshot([w], CLOCK, len(envs), timeout=60)
        assert before == {**replay(envs, tmp_path / "all.jsonl"), "coverage": before["coverage"]}
        assert before["dau"] == 4 and before["nps_responses_30d"] == 1
        zkey = f"{topic_prefix}{app}:health"
        deadline = time.monotonic() + 20
        while r.zscore(zkey, "u-a") is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert r.zscore(zkey, "u-a") is not None, "u-a's health is published before the forget"

        res = run_cli("forget", "u-a", "--timeout", "30", env=env)
        assert res.returncode == 0, res.stderr.decode()
        assert b"done" in res.stdout

        rest = [e for e in envs if _user_of(e) != "u-a"]
        expected = replay(rest, tmp_path / "rest.jsonl")
        assert expected["dau"] == 3 and expected["nps_responses_30d"] == 0  # the oracle differs
        status, after = w.get(f"/snapshot?as_of={CLOCK}")
        assert status == 200, after
        assert _without_pipeline(after) == _without_pipeline(expected)
        assert {k: after[k] for k in PIPELINE} == {k: before[k] for k in PIPELINE}
        # Redis: no health score, no parts entry for the customer u-a
        assert r.zscore(zkey, "u-a") is None
        assert r.hget(zkey + ":parts", "u-a") is None
        assert r.zscore(zkey, "acme") is not None  # other customers stay
        # the tables: the last changelog record of u-a is a tombstone, in both tables
        for table in ("users", "accounts"):
            latest = _latest(
                read_topic(stack.kafka_bootstrap, f"{topic_prefix}{app}-{table}-changelog")
            )
            ua, ud = entity_key("u-a"), entity_key("u-d")
            assert ua in latest and latest[ua] is None, (table, latest.get(ua))
            assert latest.get(ud) is not None  # others are still there
            assert not any(b"u-a" in (v or b"") for k, v in latest.items() if k != ua)

        # a worker restoring from the changelogs (fresh data dir) still has the user forgotten
        w.stop()  # leaves the group at once (a SIGKILLed member is waited for)
        w = worker("w2", env, tmp_path).start()
        wait_ready([w])
        again = wait_for_snapshot([w], CLOCK, total_records(before), timeout=60)
        assert _without_pipeline(again) == _without_pipeline(expected)

        # a record of u-a after the forget is new data: it counts
        late = [ev("a9", "page_view", "u-a", 0.5, session_id="s9")]
        load(late, tmp_path / "late.jsonl", env)
        final = wait_for_snapshot([w], CLOCK, total_records(before) + 1, timeout=60)
        expected2 = replay(rest + late, tmp_path / "rest2.jsonl")
        assert final["dau"] == 4
        assert _without_pipeline(final) == _without_pipeline(expected2)
    finally:
        w.stop()
        r.close()
