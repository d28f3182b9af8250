"""End to end on the real stack: workers' /snapshot equals `engagement replay` of the same
records, also when a worker is SIGKILLed mid-stream and when a third worker joins."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from streams.config import Config
from streams.replay import replay_lines
from streams.timeutil import format_instant
from tests.integration.conftest import Stack
from tests.integration.live_harness import (
    WorkerProc,
    make_dataset,
    metric_sums,
    metrics_vs_snapshot,
    run_cli,
    series,
    total_records,
    wait_for_snapshot,
    wait_ready,
    write_jsonl,
)

pytestmark = pytest.mark.integration

PARTITIONS = 8
RECORDS = 100_000


def _env(stack: Stack, prefix: str, redis_db: int, tmp: Path, clock: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP=stack.kafka_bootstrap,
        REDIS_URL=f"redis://{stack.redis_host}:{stack.redis_port}/{redis_db}",
        ENGAGEMENT_TOPIC_PREFIX=prefix,
        ENGAGEMENT_INPUT_PARTITIONS=str(PARTITIONS),
        ENGAGEMENT_APP_ID=prefix.strip(".").replace(".", "-") + "-app",
        ENGAGEMENT_CLOCK=clock,
        ENGAGEMENT_LOG_LEVEL="info",
    )
    return env


def _worker(name: str, env: dict[str, str], tmp: Path) -> WorkerProc:
    d = tmp / name
    d.mkdir(exist_ok=True)
    return WorkerProc(name, {**env, "ENGAGEMENT_DATA_DIR": str(d)}, tmp / f"{name}.log")


def _wait_logged(w: WorkerProc, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in w.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{w.name} never logged {text!r}:\n{w.tail()}"
        time.sleep(0.2)


def _load(path: Path, env: dict[str, str]) -> None:
    r = run_cli("load", str(path), env=env)
    assert r.returncode == 0, r.stderr.decode()[-2000:]


def _expected(path: Path, as_of: str) -> dict[str, Any]:
    with open(path, "rb") as fh:
        return replay_lines(fh, Config(), as_of)


def _compare(live: dict[str, Any], expected: dict[str, Any]) -> None:
    coverage = live.pop("coverage")
    assert coverage, "the snapshot says what it covers"
    assert set(live) == set(expected)
    diffs = {k: (live[k], expected[k]) for k in expected if live[k] != expected[k]}
    assert not diffs, json.dumps(diffs, indent=1)[:3000]


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path, str, int]:
    envs, last_ms = make_dataset(RECORDS, users=6000, seed=5, partitions=PARTITIONS)
    half = len(envs) // 2
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    write_jsonl(envs[:half], first)
    write_jsonl(envs[half:], second)
    both = tmp_path / "all.jsonl"
    both.write_bytes(first.read_bytes() + second.read_bytes())
    as_of = format_instant((last_ms + 60_000) * 1_000_000)
    return first, second, as_of, len(envs)


def _run(
    stack: Stack, topics: dict[str, str], topic_prefix: str, redis_db: int, tmp_path: Path,
    dataset: tuple[Path, Path, str, int], disturb: str,
) -> None:  # fmt: skip
    first, second, as_of, n = dataset
    env = _env(stack, topic_prefix, redis_db, tmp_path, as_of)
    # one worker on the compiled core, one on the Python engine: the same results
    w2_env = {**env, "ENGAGEMENT_ENGINE": "python"} if disturb == "none" else env
    workers = [_worker("w1", env, tmp_path).start(), _worker("w2", w2_env, tmp_path).start()]
    try:
        wait_ready(workers)
        if disturb == "none":
            _wait_logged(workers[0], "engine: the compiled core")
            _wait_logged(workers[1], "engine: Python (ENGAGEMENT_ENGINE=python)")
        _load(first, env)
        if disturb == "kill":
            time.sleep(4)  # mid-stream: the first half is being processed
            workers[0].kill()
            _load(second, env)
            time.sleep(2)
            workers[0].start()
            wait_ready([workers[0]])
        elif disturb == "join":
            time.sleep(3)
            workers.append(_worker("w3", env, tmp_path).start())
            _load(second, env)
            wait_ready([workers[2]])
        else:
            _load(second, env)
        live = wait_for_snapshot(workers, as_of, n)
        expected = _expected(tmp_path / "all.jsonl", as_of)
        assert total_records(expected) == n
        _compare(live, expected)
        # with the clocks pinned to T, the /metrics series summed over the workers are the counts
        # (a member SIGKILLed earlier may still leave the group and cause one more rebalance:
        # the sums hold once every partition is exported by exactly one worker)
        alive = [w for w in workers if w.proc is not None and w.proc.poll() is None]
        deadline = time.monotonic() + 90
        while True:
            sums = metric_sums(alive)
            owned = {
                k: series(sums, "engagement_partitions_owned", kind=k) for k in ("user", "account")
            }
            mismatches = metrics_vs_snapshot(sums, expected)
            checked = mismatches.pop("_checked")
            settled = owned == {"user": PARTITIONS, "account": PARTITIONS}
            if (settled and not mismatches) or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert settled, owned
        assert checked[0] > 30 and not mismatches, mismatches
        if disturb == "none":
            # an as-of older than the state holds, and one that is no instant
            status, body = workers[0].get("/snapshot?as_of=2001-01-01T00:00:00Z")
            assert status == 422 and "older than the state" in body["error"]
            status, body = workers[0].get("/snapshot?as_of=yesterday")
            assert status == 400 and "RFC 3339" in body["error"]
            status, body = workers[0].get("/health?ready=1")
            assert status == 200 and body["ready"] and body["live"]
        # every worker answers the same global snapshot
        for w in workers:
            status, body = w.get(f"/snapshot?as_of={as_of}")
            for _ in range(30):  # 503 while a rebalance is under way: retry
                if status == 200:
                    break
                time.sleep(2)
                status, body = w.get(f"/snapshot?as_of={as_of}")
            assert status == 200, body
            body.pop("coverage")
            assert body == expected
    finally:
        for w in workers:
            w.stop()


def test_two_workers_equal_replay(stack: Stack, topics: dict[str, str], topic_prefix: str,
                                  redis_db: int, tmp_path: Path, dataset: Any) -> None:  # fmt: skip
    _run(stack, topics, topic_prefix, redis_db, tmp_path, dataset, "none")


def test_sigkill_mid_stream_loses_and_doubles_nothing(stack: Stack, topics: dict[str, str],
        topic_prefix: str, redis_db: int, tmp_path: Path, dataset: Any) -> None:  # fmt: skip
    _run(stack, topics, topic_prefix, redis_db, tmp_path, dataset, "kill")


def test_third_worker_joining_mid_stream(stack: Stack, topics: dict[str, str], topic_prefix: str,
                                         redis_db: int, tmp_path: Path, dataset: Any) -> None:  # fmt: skip
    _run(stack, topics, topic_prefix, redis_db, tmp_path, dataset, "join")


def test_snapshot_answers_503_without_redis(stack: Stack, topics: dict[str, str],
                                            topic_prefix: str, tmp_path: Path) -> None:  # fmt: skip
    env = _env(stack, topic_prefix, 0, tmp_path, "2026-11-20T12:00:00Z")
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    w = _worker("w1", env, tmp_path).start()
    try:
        wait_ready([w])
        status, body = w.get("/snapshot")
        assert status == 503 and "Redis is unavailable" in body["error"]
        status, _ = w.get("/metrics")
        assert status == 200  # processing and /metrics go on without Redis
    finally:
        w.stop()


def test_fresh_workers_answer_before_any_data(
    stack: Stack, topics: dict[str, str], topic_prefix: str, redis_db: int, tmp_path: Path
) -> None:
    """Two workers on fresh topics, nothing sent yet: every partition is empty, and /snapshot
    answers (it answered 503 while /partials failed to encode the empty partitions' fold)."""
    clock = "2026-11-20T12:00:00Z"
    env = _env(stack, topic_prefix, redis_db, tmp_path, clock)
    workers = [_worker("w1", env, tmp_path).start(), _worker("w2", env, tmp_path).start()]
    try:
        wait_ready(workers)
        for w in workers:
            deadline = time.monotonic() + 90
            while True:
                status, body = w.get("/snapshot")
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert status == 200, body
            assert total_records(body) == 0 and body["dau"] == 0
            status, partials = w.get(f"/partials?as_of={clock}")
            assert status == 200 and partials["fold"] is None, partials
    finally:
        for w in workers:
            w.stop()


def test_restarted_worker_answers_for_its_pinned_clock(
    stack: Stack, topics: dict[str, str], topic_prefix: str, redis_db: int, tmp_path: Path
) -> None:
    """The stored watermark ahead of the worker's clock (records stamped after a pinned clock,
    as in a backfill): SIGKILLed and restarted, the worker answers /snapshot for its own clock
    at once, the same answer as before (it answered 422 "older than the state" for ever)."""
    envs, last_ms = make_dataset(8000, users=800, seed=7, partitions=PARTITIONS)
    path = tmp_path / "records.jsonl"
    write_jsonl(envs, path)
    clock = format_instant((last_ms - 3600_000) * 1_000_000)  # an hour before the last records
    env = _env(stack, topic_prefix, redis_db, tmp_path, clock)
    env["ENGAGEMENT_ROCKSDB_WRITE_BUFFER_MB"] = "4"  # not the default (8): it must reach RocksDB
    w = _worker("w1", env, tmp_path).start()
    try:
        wait_ready([w])
        _load(path, env)
        before = wait_for_snapshot([w], clock, len(envs))
        # each table partition's database was opened with the bounded memory settings
        options = sorted((tmp_path / "w1").glob("**/*.db/OPTIONS-*"))
        assert options, sorted(str(p) for p in (tmp_path / "w1").rglob("*"))[:20]
        for o in options:
            text = o.read_text()
            assert "write_buffer_size=4194304" in text, o
            assert "max_write_buffer_number=2" in text, o
        time.sleep(1.5)  # an epoch commit interval or more: the state is durable
        w.kill()
        w.start()
        wait_ready([w])
        # its previous process's group members were removed at once (agents/membership.py)
        _wait_logged(w, "removed 2 consumer group member(s) of this worker's previous process")
        deadline = time.monotonic() + 90
        while True:
            status, body = w.get("/snapshot")
            if status == 200 or time.monotonic() > deadline:
                break
            assert status == 503, body  # partitions still loading; never 422
            time.sleep(0.5)
        assert status == 200, body
        assert body == before
    finally:
        w.stop()
