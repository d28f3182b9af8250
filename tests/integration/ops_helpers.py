"""Shared pieces of the operating-tool tests (forget, dead-letters, top, rebuild): a small
hand-made record set, the environment of a test's workers, and reading a topic to its end."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from streams.config import Config
from streams.replay import replay_lines
from tests.integration.conftest import Stack
from tests.integration.live_harness import WorkerProc, run_cli, write_jsonl

CLOCK = "2026-11-20T12:00:00Z"
CLOCK_MS = 1_795_176_000_000  # CLOCK in epoch milliseconds
H = 3_600_000


def env_for(stack: Stack, prefix: str, redis_db: int, partitions: int = 2) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP=stack.kafka_bootstrap,
        REDIS_URL=f"redis://{stack.redis_host}:{stack.redis_port}/{redis_db}",
        ENGAGEMENT_TOPIC_PREFIX=prefix,
        ENGAGEMENT_INPUT_PARTITIONS=str(partitions),
        ENGAGEMENT_APP_ID=prefix.strip(".").replace(".", "-") + "-app",
        ENGAGEMENT_CLOCK=CLOCK,
        ENGAGEMENT_LOG_LEVEL="info",
        ENGAGEMENT_HEALTH_REFRESH_SECONDS="2",
    )
    return env


def worker(name: str, env: dict[str, str], tmp: Path) -> WorkerProc:
    d = tmp / name
    d.mkdir(exist_ok=True)
    return WorkerProc(name, {**env, "ENGAGEMENT_DATA_DIR": str(d)}, tmp / f"{name}.log")


def ev(
    eid: str, typ: str, user: str, ago_h: float, key: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A product-events envelope, `ago_h` hours before CLOCK (record ts = event ts)."""
    ts = CLOCK_MS - int(ago_h * H)
    body = {"event_id": eid, "type": typ, "user_id": user, "ts": ts, **extra}
    return {"topic": "product-events", "ts": ts, "key": key or user, "payload": json.dumps(body)}


def ans(rid: str, survey: str, score: int, user: str, ago_h: float, **extra: Any) -> dict[str, Any]:
    ts = CLOCK_MS - int(ago_h * H)
    body = {
        "response_id": rid,
        "survey": survey,
        "score": score,
        "user_id": user,
        "ts": ts,
        **extra,
    }
    return {"topic": "survey-answers", "ts": ts, "key": user, "payload": json.dumps(body)}


def bad(topic: str, payload: str | None, key: str, ago_h: float = 1) -> dict[str, Any]:
    return {"topic": topic, "ts": CLOCK_MS - int(ago_h * H), "key": key, "payload": payload}


def small_dataset() -> list[dict[str, Any]]:
    """A few users over the last days: u-a (no account: its own customer; one record keyed by
    another user, so it is forwarded), u-b and u-c of account acme, u-d alone."""
    recs = [
        ev("a1", "signup", "u-a", 50),
        ev("a2", "page_view", "u-a", 30, session_id="s1"),
        ev("a3", "feature_used", "u-a", 20, props={"feature": "export"}),
        ev("a4", "purchase", "u-a", 10, props={"order_id": "o1", "amount": 30}),
        ans("ra1", "nps", 3, "u-a", 5),
        ev("a5", "key_action", "u-a", 2, key="u-d"),  # keyed by another user: forwarded
        ev("b1", "page_view", "u-b", 3, account_id="acme", session_id="s2"),
        ans("rb1", "csat", 5, "u-b", 2, account_id="acme"),
        ev("c1", "feature_used", "u-c", 1, account_id="acme", props={"feature": "export"}),
        ev("d1", "page_view", "u-d", 4, session_id="s3"),
        ev("d2", "subscription_started", "u-d", 6),
    ]
    return recs


def load(envs: list[dict[str, Any]], path: Path, env: dict[str, str]) -> None:
    write_jsonl(envs, path)
    r = run_cli("load", str(path), env=env)
    assert r.returncode == 0, r.stderr.decode()[-2000:]


def replay(envs: list[dict[str, Any]], path: Path, as_of: str = CLOCK) -> dict[str, Any]:
    write_jsonl(envs, path)
    with open(path, "rb") as fh:
        return replay_lines(fh, Config(), as_of)


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record of a topic, from the start to its end offsets (aiokafka records)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go() -> list[Any]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await c.start()
        try:
            parts = c.partitions_for_topic(topic)
            if parts is None:
                await c._client.force_metadata_update()
                parts = c.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            ends = await c.end_offsets(tps)
            out: list[Any] = []
            pos = {tp: await c.position(tp) for tp in tps}
            while any(pos[tp] < ends[tp] for tp in tps):
                data = await c.getmany(timeout_ms=1000)
                for tp, msgs in data.items():
                    out.extend(msgs)
                    if msgs:
                        pos[tp] = msgs[-1].offset + 1
            return out
        finally:
            await c.stop()

    return asyncio.run(go())
