"""`engagement rebuild` on the real stack: it refuses while a worker runs; once the workers are
stopped it resets the state, and a worker started with a changed configuration (another time
zone) reproduces the replay of the input under that configuration; a user forgotten before the
rebuild stays forgotten (its records are skipped again)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from streams.config import Config
from streams.replay import replay_lines
from tests.integration.conftest import Stack
from tests.integration.live_harness import run_cli, wait_for_snapshot, wait_ready, write_jsonl
from tests.integration.ops_helpers import CLOCK, env_for, load, small_dataset, worker

pytestmark = pytest.mark.integration

TZ = "Pacific/Kiritimati"  # UTC+14: CLOCK (12:00Z) is 02:00 of the next local day


def test_rebuild_then_reprocess_with_another_timezone(
    stack: Stack, topic_prefix: str, redis_db: int, tmp_path: Path
) -> None:
    env = env_for(stack, topic_prefix, redis_db)
    app = env["ENGAGEMENT_APP_ID"]
    envs = small_dataset()
    rest = [e for e in envs if json.loads(e["payload"])["user_id"] != "u-a"]
    toml = tmp_path / "tz.toml"
    toml.write_text(f'timezone = "{TZ}"\n')
    write_jsonl(rest, tmp_path / "rest.jsonl")
    with open(tmp_path / "rest.jsonl", "rb") as fh:
        expected = replay_lines(fh, Config.from_toml_file(str(toml)), CLOCK)
    with open(tmp_path / "rest.jsonl", "rb") as fh:
        utc = replay_lines(fh, Config(), CLOCK)
    assert expected["dau"] != utc["dau"]  # the configuration change matters here

    data = tmp_path / "w1"
    w1 = worker("w1", env, tmp_path).start()
    try:
        wait_ready([w1])
        load(envs, tmp_path / "in.jsonl", env)
        wait_for_snapshot([w1], CLOCK, len(envs), timeout=60)
        res = run_cli("forget", "u-a", "--timeout", "30", env=env)
        assert res.returncode == 0, res.stderr.decode()
        refused = run_cli("rebuild", "--yes", "--data-dir", str(data), env=env)
        assert refused.returncode == 1 and b"workers are running" in refused.stderr
        # the consumer groups tell too (here Redis is another database: no worker registered)
        other = {**env, "REDIS_URL": f"redis://{stack.redis_host}:{stack.redis_port}/0"}
        refused = run_cli("rebuild", "--yes", "--data-dir", str(data), env=other)
        assert refused.returncode == 1 and b"has members" in refused.stderr, refused.stderr
        assert (data / "v1").exists()  # nothing was deleted
    finally:
        w1.stop()
    r = redis.Redis(host=stack.redis_host, port=stack.redis_port, db=redis_db)
    deadline = time.monotonic() + 20  # the registry entry expires 5 s after the last heartbeat
    while list(r.scan_iter(match=f"{topic_prefix}{app}:worker:*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    r.close()

    dry = run_cli("rebuild", "--dry-run", "--data-dir", str(data), env=env)
    assert dry.returncode == 0, dry.stderr.decode()
    assert f"reprocess {len(envs)} input records".encode() in dry.stdout
    res = run_cli("rebuild", "--yes", "--data-dir", str(data), env=env, timeout=180)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    assert b"forget tombstones kept" in res.stdout
    assert not data.exists()

    w2 = worker("w1", {**env, "ENGAGEMENT_CONFIG": str(toml)}, tmp_path).start()
    try:
        wait_ready([w2])
        live = wait_for_snapshot([w2], CLOCK, len(rest), timeout=90)
        live.pop("coverage")
        assert live == expected
    finally:
        w2.stop()
