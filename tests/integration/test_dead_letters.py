"""`engagement dead-letters` on the real broker, fed by a real worker: counts per reason equal the
snapshot's `rejected`, each dead letter points at its source record, an exported record fixed by
hand and re-sent is accepted, and one re-sent unchanged is rejected again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import Stack
from tests.integration.live_harness import run_cli, total_records, wait_for_snapshot, wait_ready
from tests.integration.ops_helpers import (
    CLOCK,
    CLOCK_MS,
    H,
    bad,
    env_for,
    ev,
    load,
    read_topic,
    small_dataset,
    worker,
)

pytestmark = pytest.mark.integration


def _json(env: dict[str, str], *args: str) -> dict:
    r = run_cli("dead-letters", "--json", *args, env=env)
    assert r.returncode == 0, r.stderr.decode()
    return dict(json.loads(r.stdout))


def test_dead_letters_list_fix_and_resend(
    stack: Stack, topic_prefix: str, redis_db: int, tmp_path: Path
) -> None:
    env = env_for(stack, topic_prefix, redis_db)
    wrong = ev("e1", "Page View", "u-e", 1, session_id="s")  # schema: the type pattern
    late = ev("e2", "page_view", "u-f", 1, session_id="s")
    body = json.loads(late["payload"])
    body["ts"] = CLOCK_MS - 60 * H  # too_late: 59 h before its record timestamp
    late["payload"] = json.dumps(body)
    envs = [*small_dataset(), bad("product-events", "{not json", "u-x"), wrong, late]
    w = worker("w1", env, tmp_path).start()
    try:
        wait_ready([w])
        load(envs, tmp_path / "in.jsonl", env)
        snap = wait_for_snapshot([w], CLOCK, len(envs), timeout=60)
        assert snap["rejected"] == {
            "too_large": 0,
            "bad_json": 1,
            "schema": 1,
            "future": 0,
            "too_late": 1,
        }

        listing = _json(env, "--records")
        assert listing["counts"] == snap["rejected"]
        recs = {r["reason"]: r for r in listing["records"]}
        assert set(recs) == {"bad_json", "schema", "too_late"}
        assert recs["schema"]["payload"] == wrong["payload"]
        assert "type" in recs["schema"]["detail"]
        # every dead letter names its source record: the same bytes are there
        source = {(m.topic, m.partition, m.offset): m for m in read_topic(stack.kafka_bootstrap, f"{topic_prefix}product-events")}  # fmt: skip
        for r in listing["records"]:
            m = source[(r["topic"], r["partition"], r["offset"])]
            assert (m.value or b"").decode() == r["payload"] and m.key.decode() == r["key"]
        text = run_cli("dead-letters", "--reason", "schema", env=env)
        assert text.returncode == 0 and b"schema" in text.stdout and b"Page View" in text.stdout

        # export the schema reject, fix it by hand, re-send it: accepted, u-e becomes active
        out = tmp_path / "bad.jsonl"
        r = run_cli("dead-letters", "--reason", "schema", "--export", str(out), env=env)
        assert r.returncode == 0, r.stderr.decode()
        lines = out.read_text().splitlines()
        assert len(lines) == 1
        fixed = json.loads(lines[0])
        fixed["payload"] = fixed["payload"].replace("Page View", "page_view")
        out.write_text(json.dumps(fixed) + "\n")
        dry = run_cli("dead-letters", "--resend", "--fix", str(out), "--dry-run", env=env)
        assert dry.returncode == 0 and b"would resend" in dry.stdout
        r = run_cli("dead-letters", "--resend", "--fix", str(out), env=env)
        assert r.returncode == 0, r.stderr.decode()
        after = wait_for_snapshot([w], CLOCK, total_records(snap) + 1, timeout=60)
        assert after["accepted"] == snap["accepted"] + 1
        assert after["dau"] == snap["dau"] + 1  # u-e
        assert after["rejected"] == snap["rejected"]  # the original rejection stays counted

        # re-sent unchanged, the bad JSON is rejected again: a second dead letter
        r = run_cli("dead-letters", "--resend", "--reason", "bad_json", env=env)
        assert r.returncode == 0, r.stderr.decode()
        again = wait_for_snapshot([w], CLOCK, total_records(after) + 1, timeout=60)
        assert again["rejected"]["bad_json"] == 2
        assert _json(env)["counts"]["bad_json"] == 2

        # a choice is required, and an unknown position is named
        r = run_cli("dead-letters", "--resend", env=env)
        assert r.returncode == 2 and b"needs a choice" in r.stderr
        r = run_cli("dead-letters", "--offset", "0:99999", env=env)
        assert r.returncode == 2 and b"0:99999" in r.stderr
    finally:
        w.stop()
